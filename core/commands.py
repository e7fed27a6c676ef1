"""The commands of `python -m core`: the name a user types, the module that owns the concept
(it has `add_arguments(parser)` and `main(args) -> int`) and a line of help. Plain data, so the
queue can check a queued command line without importing the CLI."""

# command -> (module, one-line help)
COMMANDS = {
    "phantom": ("core.data.phantom", "write procedural phantom chest X-rays (CLASS/*.png + metadata.csv)"),
    "data-info": ("core.data.sources", "count classes, sizes, patients and skipped files of a data source"),
    "train-gan": ("core.gan.job", "train a GAN / WGAN / WGAN-GP into a run directory"),
    "control": ("core.gan.steer", "steer a running job: lambda, n_critic, lr, pause, resume, stop"),
    "train-classifier": ("core.classify.train", "train the COVID-19/NORMAL/PNEUMONIA classifier"),
    "evaluate": ("core.classify.evaluate", "evaluate a classifier checkpoint on a data source"),
    "predict": ("core.classify.predict", "predict X-ray files: probabilities, OOD flag, Grad-CAM PNG"),
    "gan-metrics": ("core.studies.gan_metrics", "FID/KID/relative FD/precision-recall/C2ST of a GAN run"),
    "ablation": ("core.studies.ablation", "real vs Augmentor vs GAN-augmented classifier training"),
    "compare": ("core.studies.compare", "train GAN, WGAN and WGAN-GP on the same budget and compare"),
    "model-card": ("core.classify.modelcard", "ship a model: a copy of its snapshot with a short card"),
    "queue": ("core.runs.queue", "queue a job to start when a CPU or GPU slot is free; list, cancel"),
}
