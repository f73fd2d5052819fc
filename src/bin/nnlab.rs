//! The nnlab command line: parses the command tree and dispatches to `nnlab::cli`, where each
//! command family has its file.

#[cfg(not(target_arch = "wasm32"))]
mod dispatch {
    use clap::{Parser, Subcommand};
    use nnlab::cli::{ae, bench, classifier, dncnn, figure, gan, semi};

    #[derive(Parser)]
    #[command(
        name = "nnlab",
        version,
        about = "Deep generative models on hand-written WGSL kernels, with a CPU twin"
    )]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Show the backends available on this machine
        Info,
        /// Benchmark the conv/matmul kernels on every backend (GFLOP/s)
        Bench {
            /// seconds spent timing each op on each backend
            #[arg(long, default_value_t = 1.0)]
            seconds: f64,
            /// bench the CPU backend only (skip the GPU / software adapter)
            #[arg(long)]
            cpu_only: bool,
            /// bench the GPU backend only (skip the CPU backend)
            #[arg(long)]
            gpu_only: bool,
            /// also time DnCNN 17x64 (fresh weights) on one gray image of WIDTHxHEIGHT pixels,
            /// e.g. 4000x3000 (12 megapixels)
            #[arg(long, value_parser = bench::parse_size)]
            photo: Option<(usize, usize)>,
        },
        /// Train a model
        Train {
            #[command(subcommand)]
            what: TrainWhat,
        },
        /// Evaluate a trained model
        Eval {
            #[command(subcommand)]
            what: EvalWhat,
        },
        /// Denoise an image with a DnCNN (tiled, any size): nnlab denoise in.png out.png
        Denoise(dncnn::DenoiseArgs),
        /// Average weights files of one model (stochastic weight averaging of training snapshots)
        Average(dncnn::AverageArgs),
        /// Grow a trained model into a larger one that computes the same function (Net2Net)
        Grow {
            #[command(subcommand)]
            what: GrowWhat,
        },
        /// Regenerate a lecture figure from the shipped models
        Figure {
            #[command(subcommand)]
            what: FigureWhat,
        },
    }

    #[derive(Subcommand)]
    enum FigureWhat {
        /// sigma=10 model at sigma 5/10/15, blind model at 10/30/50, and the two compared at 10/25/50
        Dncnn(figure::FigureArgs),
    }

    #[derive(Subcommand)]
    enum GrowWhat {
        /// A DnCNN made deeper (identity layers) and wider (copied channels), then trained with
        /// `nnlab train dncnn --init`
        Dncnn(dncnn::GrowArgs),
        /// A DCGAN generator with the extra stride-1 block (`--extra-conv`) inserted as the
        /// identity, then trained with `nnlab train gan --init`
        Gan(gan::GrowArgs),
    }

    #[derive(Subcommand)]
    enum TrainWhat {
        /// The MNIST classifier (standard or adversarial training), on training digits 10000..60000
        Classifier(classifier::TrainArgs),
        /// The DnCNN denoiser on Train400 (gray) or CBSD432 (colour): fixed sigma or blind
        Dncnn(dncnn::TrainArgs),
        /// An autoencoder on MNIST (plain, sparse, contractive, denoising; dense or conv)
        Ae(ae::TrainArgs),
        /// A GAN on MNIST (dense or DCGAN; cross-entropy, minimax or least-squares loss)
        Gan(gan::TrainArgs),
    }

    #[derive(Subcommand)]
    enum EvalWhat {
        /// Accuracy and confidence of a classifier on the 10,000 MNIST test digits, under attack
        Classifier(classifier::EvalArgs),
        /// PSNR/SSIM of a DnCNN on Set12 / BSD68 / CBSD68 (paper protocol, fixed noise seed)
        Dncnn(dncnn::EvalArgs),
        /// Held-out reconstruction MSE of PCA and each autoencoder kind for several code sizes
        Ae(ae::EvalArgs),
        /// Classifier score and Frechet distance of GAN generators vs real held-out digits
        Gan(gan::EvalArgs),
        /// Semi-supervised table: test error for L labelled digits x {labels only, + noise, +
        /// adversarial consistency}, each cell trained over several seeds
        Semi(semi::EvalSemiArgs),
    }

    pub fn main() -> nnlab::Result<()> {
        match Cli::parse().cmd {
            Cmd::Info => {
                bench::info();
                Ok(())
            }
            Cmd::Bench {
                seconds,
                cpu_only,
                gpu_only,
                photo,
            } => bench::bench(
                seconds,
                bench::BenchOptions {
                    cpu_only,
                    gpu_only,
                    photo,
                },
            ),
            Cmd::Train { what } => match what {
                TrainWhat::Classifier(a) => classifier::train(a),
                TrainWhat::Dncnn(a) => dncnn::train(a),
                TrainWhat::Ae(a) => ae::train(a),
                TrainWhat::Gan(a) => gan::train(a),
            },
            Cmd::Eval { what } => match what {
                EvalWhat::Classifier(a) => classifier::eval(a),
                EvalWhat::Semi(a) => semi::eval(a),
                EvalWhat::Dncnn(a) => dncnn::eval(a),
                EvalWhat::Ae(a) => ae::eval(a),
                EvalWhat::Gan(a) => gan::eval(a),
            },
            Cmd::Denoise(a) => dncnn::denoise(a),
            Cmd::Average(a) => dncnn::average(a),
            Cmd::Grow {
                what: GrowWhat::Dncnn(a),
            } => dncnn::grow(a),
            Cmd::Grow {
                what: GrowWhat::Gan(a),
            } => gan::grow(a),
            Cmd::Figure {
                what: FigureWhat::Dncnn(a),
            } => figure::figure(a),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    nnlab::cpu::keep_freed_memory();
    if let Err(e) = nnlab::cpu::on_worker_thread(dispatch::main) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
