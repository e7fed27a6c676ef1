"""Studies over runs: GAN metrics, the loss comparison and the augmentation ablation."""
