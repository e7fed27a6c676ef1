"""GANs: the report's networks, the losses, the live hyperparameters, DiffAugment, the trainer, the train-gan job and GAN runs seen from outside."""
