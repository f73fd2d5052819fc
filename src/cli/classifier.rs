//! `nnlab train classifier` and `nnlab eval classifier`: the MNIST classifier (standard or
//! adversarial training) and its accuracy under attack.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{checks, finite_loss, hms, metadata, mnist_train, model_file, semi, RunArgs};
use crate::data::mnist::{one_hot, translate, Mnist, Split, CLASSES, PAGE_DIGITS, PIXELS, SIDE};
use crate::models::attack::{self, AdvMethod, AdvTraining, Attack};
use crate::models::classifier::train_step;
use crate::models::{Classifier, ClassifierConfig};
use crate::nn::{Adam, Module, Optimizer};
use crate::{rng, Backend, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttackName {
    Fgsm,
    /// x + eps sqrt(784) g / ||g||_2: gradient ascent with the L2 norm of an FGSM step
    Gradient,
    /// iterative FGSM from x (--steps)
    Iterative,
    /// PGD: the iterative attack from random starts in the eps ball (--steps, --restarts)
    Pgd,
}

#[derive(Args)]
pub struct TrainArgs {
    /// train on alpha C(x) + (1 - alpha) C(x~), x~ the FGSM example
    #[arg(long)]
    pub adversarial: bool,
    /// weight of the clean loss in adversarial training
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// FGSM budget used in adversarial training (pixel scale; default 0.25), or the size of the
    /// semi-supervised perturbation r (default 2.0 with --norm l2, 0.1 with --norm sign)
    #[arg(long)]
    pub eps: Option<f32>,
    /// adversarial training on RS-FGSM (random start in the eps ball, step 1.25 eps; Wong et
    /// al. 2020) instead of plain FGSM, which can overfit and mask gradients
    #[arg(long)]
    pub random_start: bool,
    /// adversarial training on PGD (Madry et al. 2018): this many signed steps of
    /// --pgd-step-size from a random start in the eps ball (0: FGSM / RS-FGSM)
    #[arg(long, default_value_t = 0)]
    pub pgd_steps: usize,
    /// PGD step size (pixel scale; default 2.5 eps / --pgd-steps)
    #[arg(long)]
    pub pgd_step_size: Option<f32>,
    /// adversarial training: grow eps linearly from 0 over this fraction of the run (a model
    /// trained from scratch against PGD at eps 0.3 can sit at chance level for epochs)
    #[arg(long, default_value_t = 0.0)]
    pub eps_ramp: f32,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Adam learning rate at the start (cosine decay to zero over the run)
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// augmentation: translate each training digit by up to this many pixels (0: none)
    #[arg(long, default_value_t = 0)]
    pub shift: u32,
    #[arg(long, default_value = "www/models/classifier.safetensors")]
    pub out: PathBuf,
    /// fine-tune: start from these weights (a shipped name or a file) with a fresh optimizer
    /// instead of a random initialisation
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// train semi-supervised on N labelled digits (a multiple of 10: N/10 of each class, drawn
    /// by --seed) or 'all'; the other training digits are unlabelled (see --unlabelled)
    #[arg(long, value_parser = semi::parse_labels)]
    pub labels: Option<semi::LabelCount>,
    #[command(flatten)]
    pub semi: semi::SemiArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args)]
pub struct EvalArgs {
    /// weights written by `nnlab train classifier`
    #[arg(long)]
    pub model: PathBuf,
    /// attacks to run, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "fgsm")]
    pub attack: Vec<AttackName>,
    /// budgets, comma-separated (pixel scale)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.05,0.1,0.15,0.2,0.25,0.3"
    )]
    pub eps: Vec<f32>,
    /// steps of the iterative attack and of PGD (step size 2.5 eps / steps)
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// PGD: random starts per digit; a digit counts as robust only if every one fails
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// PGD: seed of the random starts
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// push toward this class instead of away from the true label
    #[arg(long)]
    pub target: Option<u8>,
    /// evaluate on the first N test digits only
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Translate every image of a batch by a seeded random offset in [-max, max]^2.
pub(super) fn shift_batch(xs: &mut [f32], max: u32, seed: u64) {
    let span = 2 * max + 1;
    for (i, img) in xs.chunks_mut(PIXELS).enumerate() {
        let dx = (rng::random_u32(seed, 2 * i as u32) % span) as i32 - max as i32;
        let dy = (rng::random_u32(seed, 2 * i as u32 + 1) % span) as i32 - max as i32;
        let moved = translate(img, dx, dy);
        img.copy_from_slice(&moved);
    }
}

pub fn train(a: TrainArgs) -> Result<()> {
    if let Some(labels) = a.labels {
        if a.adversarial {
            return Err(Error::Invalid(
                "--labels (semi-supervised) and --adversarial cannot be combined".into(),
            ));
        }
        let r = semi::SemiRun::new(&a.semi, labels, a.eps, a.lr, a.seed)?;
        crate::files::check_writable(&a.out)?;
        let b = a.run.backend()?;
        return semi::train(b.as_ref(), &a.run.data_dir()?, &r, &a.out);
    }
    if a.semi.unlabelled != semi::UnlabelledArg::None || a.semi.entropy {
        return Err(Error::Invalid(
            "--unlabelled and --entropy need --labels N (the other digits are the unlabelled ones)"
                .into(),
        ));
    }
    let eps = a.eps.unwrap_or(0.25);
    if a.shift > 8 {
        return Err(Error::Invalid(format!(
            "--shift must be at most 8 pixels, got {}",
            a.shift
        )));
    }
    if a.epochs == 0 || a.batch == 0 || !(a.lr > 0.0 && a.lr.is_finite()) {
        return Err(Error::Invalid(format!(
            "need epochs >= 1, batch >= 1, lr > 0 (got {}, {}, {})",
            a.epochs, a.batch, a.lr
        )));
    }
    if (a.pgd_steps > 0 || a.pgd_step_size.is_some()) && !a.adversarial {
        return Err(Error::Invalid(
            "--pgd-steps and --pgd-step-size need --adversarial".into(),
        ));
    }
    if !(0.0..=1.0).contains(&a.eps_ramp) || (a.eps_ramp > 0.0 && !a.adversarial) {
        return Err(Error::Invalid(format!(
            "--eps-ramp must be a fraction in [0, 1] and needs --adversarial, got {}",
            a.eps_ramp
        )));
    }
    if a.pgd_steps > 0 && a.random_start {
        return Err(Error::Invalid(
            "--random-start is RS-FGSM; PGD (--pgd-steps) always starts at random".into(),
        ));
    }
    let pgd_step = a
        .pgd_step_size
        .unwrap_or(2.5 * eps / a.pgd_steps.max(1) as f32);
    if a.adversarial {
        Attack::fgsm(eps).validate()?;
        if a.pgd_steps > 0 {
            Attack {
                kind: attack::AttackKind::Iterative {
                    steps: a.pgd_steps,
                    step_size: pgd_step,
                    random_start: Some(a.seed),
                    restarts: 1,
                },
                ..Attack::fgsm(eps)
            }
            .validate()?;
        }
        if !(0.0..=1.0).contains(&a.alpha) {
            return Err(Error::Invalid(format!(
                "--alpha must be in [0, 1], got {}",
                a.alpha
            )));
        }
    }
    // a batch of digits (and a shifted copy) is the least one step holds
    checks::check_memory(
        &format!("--batch {}", a.batch),
        checks::f32_bytes(&[a.batch, 2 * PIXELS + CLASSES]),
    )?;
    crate::files::check_writable(&a.out)?;
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let dir = a.run.data_dir()?;
    let train = mnist_train(&dir)?;
    // an epoch takes whole batches only: a larger batch would train nothing
    checks::check_batch(a.batch, train.len(), "training digits (MNIST 10000..60000)")?;
    let test = Mnist::load(&dir, Split::Test)?;
    let model = match &a.init {
        Some(p) => {
            let p = model_file(p)?;
            println!("fine-tuning from {}", p.display());
            Classifier::load_file(b, &p)?
        }
        None => Classifier::new(b, ClassifierConfig::default(), a.seed)?,
    };
    let mut opt = Adam::new(a.lr, 0.9, 0.999);
    let steps_per_epoch = train.len() / a.batch;
    let total = steps_per_epoch * a.epochs;
    let adv = |step: usize| {
        let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
        let ramp = a.eps_ramp * total as f32;
        // the budget (and PGD's step with it) grows linearly over the ramp
        let scale = if step as f32 >= ramp {
            1.0
        } else {
            (step as f32 + 1.0) / ramp
        };
        AdvTraining {
            eps: eps * scale,
            alpha: a.alpha,
            method: if a.pgd_steps > 0 {
                AdvMethod::Pgd {
                    steps: a.pgd_steps,
                    step_size: pgd_step * scale,
                    seed,
                }
            } else if a.random_start {
                AdvMethod::RandomStart(seed)
            } else {
                AdvMethod::Fgsm
            },
        }
    };
    let ramp = if a.eps_ramp > 0.0 {
        format!(
            ", eps ramped up over the first {:.0}% of steps",
            a.eps_ramp * 100.0
        )
    } else {
        String::new()
    };
    let method = if a.pgd_steps > 0 {
        format!("PGD {} steps of {:.4}{ramp}", a.pgd_steps, pgd_step)
    } else if a.random_start {
        format!("RS-FGSM{ramp}")
    } else {
        format!("FGSM{ramp}")
    };
    println!(
        "training the MNIST classifier on {} ({} digits {}..{}, batch {}, {} epochs, Adam lr {} cosine, shift +-{} px, seed {}{})",
        b.info().describe(),
        train.len(),
        PAGE_DIGITS,
        PAGE_DIGITS + train.len(),
        a.batch,
        a.epochs,
        a.lr,
        a.shift,
        a.seed,
        if a.adversarial { format!(", adversarial: alpha {} eps {} {method}", a.alpha, eps) } else { String::new() }
    );
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut step = 0usize;
    let mut test_acc = 0.0;
    for epoch in 0..a.epochs {
        let order = rng::shuffled(
            (0..train.len()).collect(),
            a.seed.wrapping_mul(1000).wrapping_add(epoch as u64 + 1),
        );
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        for idx in order.chunks_exact(a.batch) {
            // cosine decay from lr to 0 over the whole run
            let t = step as f32 / total as f32;
            opt.set_lr(a.lr * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
            let (mut xs, ys) = train.gather(idx)?;
            if a.shift > 0 {
                shift_batch(
                    &mut xs,
                    a.shift,
                    a.seed.wrapping_mul(7919).wrapping_add(step as u64),
                );
            }
            let x = b.upload(&[idx.len(), 1, SIDE, SIDE], &xs)?;
            let tt = b.upload(&[idx.len(), CLASSES], &one_hot(&ys))?;
            let cfg = adv(step);
            let loss = train_step(b, &model, &mut opt, &x, &tt, a.adversarial.then_some(&cfg))?;
            let l = finite_loss(b, &loss, step)?;
            loss_sum += l as f64;
            loss_n += 1;
            step += 1;
            if last_print.elapsed().as_secs_f64() >= 10.0 || step == total {
                let el = start.elapsed().as_secs_f64();
                let rate = (step * a.batch) as f64 / el;
                println!(
                    "epoch {}/{}  step {step}/{total}  loss {:.4}  {:.0} images/s  elapsed {}  ETA {}",
                    epoch + 1,
                    a.epochs,
                    loss_sum / loss_n as f64,
                    rate,
                    hms(el),
                    hms(el / step as f64 * (total - step) as f64)
                );
                (loss_sum, loss_n) = (0.0, 0);
                last_print = Instant::now();
            }
        }
        let r = attack::evaluate(b, &model, &test.images, &test.labels, 500, None, |_| {})?;
        test_acc = r.accuracy();
        println!(
            "epoch {}/{} done: test accuracy {:.2}% ({}/{})  elapsed {}",
            epoch + 1,
            a.epochs,
            100.0 * test_acc,
            r.correct,
            r.n,
            hms(start.elapsed().as_secs_f64())
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let mut meta = metadata(b, "nnlab MNIST classifier");
    meta.insert(
        "data".to_string(),
        format!(
            "MNIST training digits {}..{}",
            PAGE_DIGITS,
            PAGE_DIGITS + train.len()
        ),
    );
    meta.insert("test_accuracy".to_string(), format!("{:.4}", test_acc));
    meta.insert("train_seconds".to_string(), format!("{:.0}", secs));
    meta.insert("seed".to_string(), a.seed.to_string());
    if let Some(p) = &a.init {
        meta.insert("init".to_string(), p.display().to_string());
    }
    meta.insert(
        "augmentation".to_string(),
        format!("random translation up to {} px", a.shift),
    );
    meta.insert(
        "adversarial".to_string(),
        if a.adversarial {
            format!("alpha {} eps {} {method}", a.alpha, eps)
        } else {
            "no".into()
        },
    );
    crate::weights::save_file(b, &model.params(), &a.out, Some(meta))?;
    println!(
        "trained in {} ; test accuracy {:.2}% ; weights written to {}",
        hms(secs),
        100.0 * test_acc,
        a.out.display()
    );
    Ok(())
}

pub fn eval(a: EvalArgs) -> Result<()> {
    if a.eps.is_empty() || a.attack.is_empty() || a.batch == 0 {
        return Err(Error::Invalid(
            "need at least one --eps, one --attack and --batch >= 1".into(),
        ));
    }
    checks::check_limit(a.limit)?;
    // every attack is checked before anything is loaded or printed; this list is what runs
    let mut attacks = Vec::new();
    for name in &a.attack {
        for &eps in &a.eps {
            let (mut at, label) = match name {
                AttackName::Fgsm => (Attack::fgsm(eps), "fgsm".to_string()),
                AttackName::Gradient => (Attack::gradient_l2(eps), "gradient".to_string()),
                AttackName::Iterative => {
                    (Attack::iterative(eps, a.steps), format!("iter{}", a.steps))
                }
                AttackName::Pgd => (
                    Attack::pgd(eps, a.steps, a.restarts, a.seed),
                    format!("pgd{}x{}", a.steps, a.restarts),
                ),
            };
            at.target = a.target;
            at.validate()?;
            attacks.push((label, at));
        }
    }
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let model = Classifier::load_file(b, &model_file(&a.model)?)?;
    let mut test = Mnist::load(&a.run.data_dir()?, Split::Test)?;
    if let Some(n) = a.limit {
        test = test.slice(0..n.min(test.len()))?;
    }
    println!(
        "model {} on {} MNIST test digits, {} (gradient: L2 norm eps * 28)",
        a.model.display(),
        test.len(),
        b.info().describe()
    );
    println!(
        "{:<10} {:>5}  {:>8}  {:>7}  {:>9}  {:>16}{}",
        "attack",
        "eps",
        "accuracy",
        "error",
        "mean conf",
        "conf when wrong",
        if a.target.is_some() {
            "  hit target"
        } else {
            ""
        }
    );
    for (label, at) in &attacks {
        let r = attack::evaluate(
            b,
            &model,
            &test.images,
            &test.labels,
            a.batch,
            Some(at),
            |_| {},
        )?;
        let hit = if a.target.is_some() {
            format!("  {:>9.2}%", 100.0 * r.target_hits as f64 / r.n as f64)
        } else {
            String::new()
        };
        println!(
            "{:<10} {:>5.2}  {:>7.2}%  {:>6.2}%  {:>8.1}%  {:>15.1}%{hit}",
            label,
            at.eps,
            100.0 * r.accuracy(),
            100.0 * r.error(),
            100.0 * r.mean_confidence(),
            100.0 * r.mean_wrong_confidence()
        );
    }
    Ok(())
}
