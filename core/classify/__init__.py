"""The classifier: model, training, evaluation, prediction, ensembles, Grad-CAM and model cards."""
