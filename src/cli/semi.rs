//! Semi-supervised training of the MNIST classifier (`nnlab train classifier --labels N
//! --unlabelled adversarial|noise|none`) and the eval table over L labelled digits x the three
//! kinds of unlabelled term (`nnlab eval semi`). The cost is in `models::semi`.

use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{finite_loss, hms, metadata, mnist_train, RunArgs};
use crate::data::mnist::{one_hot, Mnist, Split, CLASSES, PAGE_DIGITS, SIDE};
use crate::models::attack;
use crate::models::semi::{self, PerturbNorm, SemiConfig, Unlabelled};
use crate::models::{Classifier, ClassifierConfig};
use crate::nn::{Adam, Module, Optimizer};
use crate::{rng, Backend, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnlabelledArg {
    None,
    Noise,
    Adversarial,
}

impl From<UnlabelledArg> for Unlabelled {
    fn from(u: UnlabelledArg) -> Unlabelled {
        match u {
            UnlabelledArg::None => Unlabelled::None,
            UnlabelledArg::Noise => Unlabelled::Noise,
            UnlabelledArg::Adversarial => Unlabelled::Adversarial,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormArg {
    L2,
    Sign,
}

/// `--labels`: N labelled digits (N/10 per class) or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelCount {
    All,
    PerClass(usize),
}

impl LabelCount {
    pub fn describe(&self) -> String {
        match self {
            LabelCount::All => "all".into(),
            LabelCount::PerClass(k) => (k * CLASSES).to_string(),
        }
    }
}

pub fn parse_labels(s: &str) -> std::result::Result<LabelCount, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(LabelCount::All);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 && n % CLASSES == 0 => Ok(LabelCount::PerClass(n / CLASSES)),
        _ => Err(format!(
            "'{s}' is not a label count: give a positive multiple of 10 (n/10 digits of each class) or 'all'"
        )),
    }
}

/// The semi-supervised flags of `nnlab train classifier` (and of `nnlab eval semi`).
#[derive(Args, Clone, Debug)]
pub struct SemiArgs {
    /// what the unlabelled digits add: nothing, consistency under random noise, or under the
    /// virtual adversarial direction (VAT)
    #[arg(long, value_enum, default_value_t = UnlabelledArg::None)]
    pub unlabelled: UnlabelledArg,
    /// size r by its L2 norm (eps g/||g||_2) or by sign (eps sign(g))
    #[arg(long, value_enum, default_value_t = NormArg::L2)]
    pub norm: NormArg,
    /// L2 norm of the power iteration's random start
    #[arg(long, default_value_t = 0.1)]
    pub xi: f32,
    /// weight of the consistency term
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f32,
    /// add the mean entropy of the unlabelled predictions (entropy minimisation)
    #[arg(long)]
    pub entropy: bool,
    /// with --entropy: grow the entropy term's weight linearly from 0 to 1 over this fraction of
    /// the steps (0: weight 1 from the start), so that it does not lock in the early mistakes
    #[arg(long, default_value_t = 0.0)]
    pub entropy_ramp: f32,
    /// optimizer steps (each: one labelled and one unlabelled batch)
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// labelled digits per step (all of them when fewer)
    #[arg(long, default_value_t = 32)]
    pub labelled_batch: usize,
    /// unlabelled digits per step
    #[arg(long, default_value_t = 64)]
    pub unlabelled_batch: usize,
    /// hold the last N training digits out as a validation set (to pick settings; never the
    /// test set); 0: none
    #[arg(long, default_value_t = 0)]
    pub val: usize,
    /// augmentation of the labelled digits only: translate each by up to this many pixels per
    /// step (0: none)
    #[arg(long, default_value_t = 0)]
    pub labelled_shift: u32,
    /// the classifier's widths: conv1, conv2, conv3 channels and hidden units
    #[arg(long, value_delimiter = ',', default_value = "16,32,32,128")]
    pub channels: Vec<usize>,
}

/// Everything one semi-supervised run needs.
#[derive(Clone, Debug)]
pub struct SemiRun {
    pub labels: LabelCount,
    pub cfg: SemiConfig,
    pub steps: usize,
    pub labelled_batch: usize,
    pub unlabelled_batch: usize,
    pub labelled_shift: u32,
    /// fraction of the steps over which the entropy weight grows from 0 to 1
    pub entropy_ramp: f32,
    pub val: usize,
    pub config: ClassifierConfig,
    pub lr: f32,
    pub seed: u64,
}

impl SemiRun {
    pub fn new(
        args: &SemiArgs,
        labels: LabelCount,
        eps: Option<f32>,
        lr: f32,
        seed: u64,
    ) -> Result<SemiRun> {
        let norm = match args.norm {
            NormArg::L2 => PerturbNorm::L2,
            NormArg::Sign => PerturbNorm::Sign,
        };
        let cfg = SemiConfig {
            unlabelled: args.unlabelled.into(),
            norm,
            eps: eps.unwrap_or(match norm {
                PerturbNorm::L2 => SemiConfig::default().eps,
                PerturbNorm::Sign => 0.1,
            }),
            xi: args.xi,
            lambda: args.lambda,
            entropy: args.entropy,
            entropy_weight: 1.0,
        };
        cfg.validate()?;
        let [c1, c2, c3, hidden] = args.channels[..] else {
            return Err(Error::Invalid(format!(
                "--channels takes four widths (conv1,conv2,conv3,hidden), got {:?}",
                args.channels
            )));
        };
        if args.channels.iter().any(|&c| c == 0 || c > 1024) {
            return Err(Error::Invalid(format!(
                "--channels: each width must be in 1..=1024, got {:?}",
                args.channels
            )));
        }
        if args.steps == 0 || args.labelled_batch == 0 || args.unlabelled_batch == 0 {
            return Err(Error::Invalid(
                "--steps, --labelled-batch and --unlabelled-batch must be >= 1".into(),
            ));
        }
        if args.labelled_batch > 4096 || args.unlabelled_batch > 4096 {
            return Err(Error::Invalid(
                "--labelled-batch and --unlabelled-batch must be at most 4096".into(),
            ));
        }
        if args.labelled_shift > 8 {
            return Err(Error::Invalid(format!(
                "--labelled-shift must be at most 8 pixels, got {}",
                args.labelled_shift
            )));
        }
        if !(0.0..=1.0).contains(&args.entropy_ramp) {
            return Err(Error::Invalid(format!(
                "--entropy-ramp is a fraction of the run, in [0, 1], got {}",
                args.entropy_ramp
            )));
        }
        if args.entropy_ramp > 0.0 && !args.entropy {
            return Err(Error::Invalid("--entropy-ramp needs --entropy".into()));
        }
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Invalid(format!("--lr must be > 0, got {lr}")));
        }
        Ok(SemiRun {
            labels,
            cfg,
            steps: args.steps,
            labelled_batch: args.labelled_batch,
            unlabelled_batch: args.unlabelled_batch,
            labelled_shift: args.labelled_shift,
            entropy_ramp: args.entropy_ramp,
            val: args.val,
            config: ClassifierConfig { c1, c2, c3, hidden },
            lr,
            seed,
        })
    }

    pub fn describe(&self) -> String {
        let c = &self.cfg;
        let norm = if c.norm == PerturbNorm::L2 {
            "L2"
        } else {
            "sign"
        };
        let what = match c.unlabelled {
            Unlabelled::None => "labels only".to_string(),
            Unlabelled::Noise => format!(
                "noise consistency, {norm} eps {} lambda {}",
                c.eps, c.lambda
            ),
            Unlabelled::Adversarial => format!(
                "adversarial consistency (VAT, xi {}), {norm} eps {} lambda {}",
                c.xi, c.eps, c.lambda
            ),
        };
        format!(
            "{} labels{}, {what}{}, {} steps, batches {}+{}, Adam lr {} cosine, widths {}/{}/{}/{}, seed {}",
            self.labels.describe(),
            if self.labelled_shift > 0 {
                format!(" (shifted +-{} px)", self.labelled_shift)
            } else {
                String::new()
            },
            match (c.entropy, self.entropy_ramp > 0.0) {
                (false, _) => String::new(),
                (true, false) => " + entropy".into(),
                (true, true) => format!(" + entropy (weight ramped up over {} of the steps)", self.entropy_ramp),
            },
            self.steps,
            self.labelled_batch,
            self.unlabelled_batch,
            self.lr,
            self.config.c1,
            self.config.c2,
            self.config.c3,
            self.config.hidden,
            self.seed
        )
    }
}

/// What a run measured.
pub struct SemiOutcome {
    pub val_error: Option<f64>,
    pub test_error: f64,
    pub secs: f64,
}

/// Train one semi-supervised classifier on `train` (the CLI's training digits), report
/// progress when `verbose`, and measure it on the validation digits and on `test`.
pub fn run(
    b: &dyn Backend,
    train: &Mnist,
    test: &Mnist,
    r: &SemiRun,
    verbose: bool,
) -> Result<(Classifier, SemiOutcome)> {
    if r.val >= train.len() {
        return Err(Error::Invalid(format!(
            "--val {} leaves no training digits (there are {})",
            r.val,
            train.len()
        )));
    }
    let pool = train.len() - r.val;
    let labelled = match r.labels {
        LabelCount::All => (0..pool).collect(),
        LabelCount::PerClass(k) => semi::balanced_subset(&train.labels[..pool], k, r.seed)?,
    };
    let is_labelled = {
        let mut m = vec![false; pool];
        for &i in &labelled {
            m[i] = true;
        }
        m
    };
    let unlabelled: Vec<usize> = (0..pool).filter(|&i| !is_labelled[i]).collect();
    let uses_unlabelled =
        (r.cfg.unlabelled != Unlabelled::None || r.cfg.entropy) && !unlabelled.is_empty();
    let model = Classifier::new(b, r.config, r.seed)?;
    let mut opt = Adam::new(r.lr, 0.9, 0.999);
    if verbose {
        println!(
            "semi-supervised MNIST classifier on {}: {} ({} labelled, {} unlabelled of digits {}..{}, {} held out for validation)",
            b.info().describe(),
            r.describe(),
            labelled.len(),
            if uses_unlabelled { unlabelled.len() } else { 0 },
            PAGE_DIGITS,
            PAGE_DIGITS + pool,
            r.val
        );
    }
    let bl = r.labelled_batch.min(labelled.len());
    let mut l_order = Vec::new();
    let mut u_order = Vec::new();
    let (mut l_epoch, mut u_epoch) = (0u64, 0u64);
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut sums = [0.0f64; 4];
    let mut count = 0usize;
    for step in 0..r.steps {
        let t = step as f32 / r.steps as f32;
        opt.set_lr(r.lr * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
        let li = next_batch(&labelled, &mut l_order, &mut l_epoch, bl, r.seed ^ 0x1abe1);
        let (mut xs, ys) = train.gather(&li)?;
        if r.labelled_shift > 0 {
            super::classifier::shift_batch(
                &mut xs,
                r.labelled_shift,
                r.seed.wrapping_mul(7919).wrapping_add(step as u64),
            );
        }
        let x_l = b.upload(&[li.len(), 1, SIDE, SIDE], &xs)?;
        let t_l = b.upload(&[li.len(), CLASSES], &one_hot(&ys))?;
        let x_u = if uses_unlabelled {
            let ui = next_batch(
                &unlabelled,
                &mut u_order,
                &mut u_epoch,
                r.unlabelled_batch.min(unlabelled.len()),
                r.seed ^ 0x5e111,
            );
            let (xs, _) = train.gather(&ui)?;
            Some(b.upload(&[ui.len(), 1, SIDE, SIDE], &xs)?)
        } else {
            None
        };
        let step_seed = r.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
        let cfg = SemiConfig {
            entropy_weight: entropy_weight(r.entropy_ramp, t),
            ..r.cfg
        };
        let parts = semi::train_step(
            b,
            &model,
            &mut opt,
            &x_l,
            &t_l,
            x_u.as_ref(),
            &cfg,
            step_seed,
        )?;
        sums[0] += finite_loss(b, &parts[0], step)? as f64;
        for k in 1..4 {
            sums[k] += crate::backend::read_blocking(b, &parts[k])?[0] as f64;
        }
        count += 1;
        if verbose && (last_print.elapsed().as_secs_f64() >= 15.0 || step + 1 == r.steps) {
            let el = start.elapsed().as_secs_f64();
            let n = count as f64;
            println!(
                "step {}/{}  cost {:.4} (labelled CE {:.4}, consistency CE {:.4}, entropy {:.4})  elapsed {}  ETA {}",
                step + 1,
                r.steps,
                sums[0] / n,
                sums[1] / n,
                sums[2] / n,
                sums[3] / n,
                hms(el),
                hms(el / (step + 1) as f64 * (r.steps - step - 1) as f64)
            );
            sums = [0.0; 4];
            count = 0;
            last_print = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let val_error = if r.val > 0 {
        let v = train.slice(pool..train.len())?;
        if verbose {
            println!("{}", top_confusions(b, &model, &v)?);
        }
        Some(attack::evaluate(b, &model, &v.images, &v.labels, 500, None, |_| {})?.error())
    } else {
        None
    };
    let test_error =
        attack::evaluate(b, &model, &test.images, &test.labels, 500, None, |_| {})?.error();
    Ok((
        model,
        SemiOutcome {
            val_error,
            test_error,
            secs,
        },
    ))
}

/// The entropy term's weight at fraction `t` of the run: linear from 0 to 1 over the first
/// `ramp` of it (1 throughout when `ramp` is 0).
pub fn entropy_weight(ramp: f32, t: f32) -> f32 {
    if ramp <= 0.0 {
        1.0
    } else {
        (t / ramp).min(1.0)
    }
}

/// The validation digits' most frequent mistakes, as a line for the log: which classes a
/// labelled draw leaves unresolved (e.g. 9 taken for 4).
fn top_confusions(b: &dyn Backend, model: &Classifier, v: &Mnist) -> Result<String> {
    use crate::data::mnist::PIXELS;
    let mut predicted = Vec::with_capacity(v.len());
    for (xs, ys) in v.images.chunks(500 * PIXELS).zip(v.labels.chunks(500)) {
        let x = b.upload(&[ys.len(), 1, SIDE, SIDE], xs)?;
        let p = model.probabilities(b, &x)?;
        predicted.extend(p.chunks(CLASSES).map(attack::argmax));
    }
    let list: Vec<String> = semi::top_mistakes(&v.labels, &predicted, 6)
        .iter()
        .map(|m| format!("{}->{} {}", m.truth, m.predicted, m.count))
        .collect();
    Ok(format!(
        "validation mistakes, most frequent (true->predicted count): {}",
        list.join(", ")
    ))
}

/// The next `n` indices of `items` in a seeded order that is reshuffled each pass.
fn next_batch(
    items: &[usize],
    order: &mut Vec<usize>,
    epoch: &mut u64,
    n: usize,
    seed: u64,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if order.is_empty() {
            *epoch += 1;
            *order = rng::shuffled(items.to_vec(), seed.wrapping_mul(7919).wrapping_add(*epoch));
            order.reverse();
        }
        out.push(order.pop().expect("refilled above"));
    }
    out
}

/// Write a trained model with its model-card metadata (how it was trained, what it measured).
fn save(
    b: &dyn Backend,
    model: &Classifier,
    r: &SemiRun,
    o: &SemiOutcome,
    path: &std::path::Path,
) -> Result<()> {
    let mut meta = metadata(b, "nnlab MNIST classifier (semi-supervised)");
    meta.insert("training".into(), r.describe());
    meta.insert("test_accuracy".into(), format!("{:.4}", 1.0 - o.test_error));
    meta.insert("train_seconds".into(), format!("{:.0}", o.secs));
    meta.insert("seed".into(), r.seed.to_string());
    if let Some(v) = o.val_error {
        meta.insert("val_accuracy".into(), format!("{:.4}", 1.0 - v));
    }
    crate::weights::save_file(b, &model.params(), path, Some(meta))
}

/// `nnlab train classifier --labels N ...`: one run, its weights written to `out`.
pub fn train(
    b: &dyn Backend,
    dir: &std::path::Path,
    r: &SemiRun,
    out: &std::path::Path,
) -> Result<()> {
    let train = mnist_train(dir)?;
    let test = Mnist::load(dir, Split::Test)?;
    let (model, o) = run(b, &train, &test, r, true)?;
    save(b, &model, r, &o, out)?;
    println!(
        "trained in {} ; {}test error {:.2}% ; weights written to {}",
        hms(o.secs),
        o.val_error
            .map(|v| format!("validation error {:.2}% ; ", 100.0 * v))
            .unwrap_or_default(),
        100.0 * o.test_error,
        out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct EvalSemiArgs {
    /// label counts of the table's rows (multiples of 10, or all)
    #[arg(long, value_delimiter = ',', value_parser = parse_labels, default_value = "100,600,1000")]
    pub labels: Vec<LabelCount>,
    /// the unlabelled terms compared in each row (`none` stays labels only: --entropy applies to
    /// the other two)
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,noise,adversarial"
    )]
    pub kinds: Vec<UnlabelledArg>,
    /// seeds per cell (each seed draws its own balanced labelled subset)
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// perturbation size (default: 2.0 for L2, 0.1 for sign)
    #[arg(long)]
    pub eps: Option<f32>,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// write each cell's model to DIR/semi_L<n>_<kind>_s<seed>.safetensors
    #[arg(long)]
    pub save_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub semi: SemiArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `nnlab eval semi`: train every (L, kind, seed) cell and print the test-error table (mean +-
/// sd over the seeds, sample standard deviation), each cell's runs printed as they finish.
pub fn eval(a: EvalSemiArgs) -> Result<()> {
    if a.labels.is_empty() || a.kinds.is_empty() || a.seeds.is_empty() {
        return Err(Error::Invalid(
            "need at least one --labels, --kinds and --seeds".into(),
        ));
    }
    let runs = |labels: LabelCount, kind: UnlabelledArg, seed: u64| {
        let mut s = a.semi.clone();
        s.unlabelled = kind;
        if kind == UnlabelledArg::None {
            // the labels-only column stays labels only: --entropy is a term on the unlabelled
            // digits, for the other columns
            s.entropy = false;
            s.entropy_ramp = 0.0;
        }
        SemiRun::new(&s, labels, a.eps, a.lr, seed)
    };
    // every setting is checked before any training
    for &l in &a.labels {
        for &k in &a.kinds {
            runs(l, k, a.seeds[0])?;
        }
    }
    let file = |l: LabelCount, k: UnlabelledArg, seed: u64| {
        let kind = format!("{k:?}").to_lowercase();
        a.save_dir
            .as_ref()
            .map(|d| d.join(format!("semi_L{}_{kind}_s{seed}.safetensors", l.describe())))
    };
    if let Some(f) = file(a.labels[0], a.kinds[0], a.seeds[0]) {
        crate::files::check_writable(&f)?;
    }
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let dir = a.run.data_dir()?;
    let train = mnist_train(&dir)?;
    let test = Mnist::load(&dir, Split::Test)?;
    let start = Instant::now();
    // seeds outermost, so that an interrupted table still has whole rows of the first seeds
    let mut errs = vec![vec![Vec::new(); a.kinds.len()]; a.labels.len()];
    for &seed in &a.seeds {
        for (li, &l) in a.labels.iter().enumerate() {
            for (ki, &k) in a.kinds.iter().enumerate() {
                let r = runs(l, k, seed)?;
                let (model, o) = run(b, &train, &test, &r, false)?;
                if let Some(f) = file(l, k, seed) {
                    save(b, &model, &r, &o, &f)?;
                }
                println!(
                    "{}: test error {:.2}%{}  ({}; total elapsed {})",
                    r.describe(),
                    100.0 * o.test_error,
                    o.val_error
                        .map(|v| format!(", validation error {:.2}%", 100.0 * v))
                        .unwrap_or_default(),
                    hms(o.secs),
                    hms(start.elapsed().as_secs_f64())
                );
                errs[li][ki].push(100.0 * o.test_error);
            }
        }
    }
    let table: Vec<(LabelCount, Vec<(f64, f64)>)> = a
        .labels
        .iter()
        .zip(&errs)
        .map(|(&l, row)| (l, row.iter().map(|e| mean_sd(e)).collect()))
        .collect();
    let names: Vec<&str> = a
        .kinds
        .iter()
        .map(|k| match k {
            UnlabelledArg::None => "labels only",
            UnlabelledArg::Noise => "+ noise consistency",
            UnlabelledArg::Adversarial => "+ adversarial consistency",
        })
        .collect();
    println!(
        "\ntest error (%) on the 10,000 MNIST test digits, mean +- sd over seeds {:?}",
        a.seeds
    );
    println!("| L | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (l, row) in table {
        let cells: Vec<String> = row
            .iter()
            .map(|(m, sd)| format!("{m:.2} +- {sd:.2}"))
            .collect();
        println!("| {} | {} |", l.describe(), cells.join(" | "));
    }
    Ok(())
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}
