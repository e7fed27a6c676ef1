"""X-Ray GAN Studio core: data, models, losses and training for GAN augmentation of chest X-rays.

Never imports Streamlit; every long job runs as `python -m core <command>`.
"""

__version__ = "0.1.0"

# Class order used by every X-ray model, metric and page.
CLASSES = ("COVID-19", "NORMAL", "PNEUMONIA")
