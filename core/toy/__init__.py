"""The playground's toy 1D/2D GANs: datasets, trainer and the compiled critic step."""
