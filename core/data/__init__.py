"""Data: reading images, datasets, sources and layouts, phantoms, the decoded cache, patient splits, archives and augmentation."""
