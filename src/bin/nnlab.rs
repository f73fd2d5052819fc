//! The nnlab command line: backend info and the kernel bench (training, evaluation and
//! denoising commands arrive with the model issues).

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::time::Duration;

    use clap::{Parser, Subcommand};
    use nnlab::cpu::CpuBackend;
    use nnlab::gpu::{GpuBackend, GpuOptions};

    #[derive(Parser)]
    #[command(name = "nnlab", version, about = "Deep generative models on hand-written WGSL kernels, with a CPU twin")]
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
        },
    }

    pub fn main() -> Result<(), String> {
        let cli = Cli::parse();
        match cli.cmd {
            Cmd::Info => {
                println!("{}", CpuBackend::new().info().describe());
                match GpuBackend::new_blocking(GpuOptions::default()) {
                    Ok(g) => {
                        let l = g.limits();
                        println!("{}", g.info().describe());
                        println!(
                            "  max storage binding {} MiB, max buffer {} MiB, max workgroups/dim {}",
                            l.max_storage_buffer_binding_size >> 20,
                            l.max_buffer_size >> 20,
                            l.max_compute_workgroups_per_dimension
                        );
                    }
                    Err(e) => println!("GPU: unavailable: {e}"),
                }
            }
            Cmd::Bench { seconds } => {
                if !(seconds > 0.0 && seconds < 600.0) {
                    return Err(format!("--seconds must be in (0, 600), got {seconds}"));
                }
                let table = nnlab::bench::run(Duration::from_secs_f64(seconds)).map_err(|e| e.to_string())?;
                print!("{table}");
            }
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
