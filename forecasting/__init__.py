"""Forecasting domain: meter histories, cleaning, features, models, evaluation and the model store.

Nothing here imports FastAPI, Dramatiq or Redis; TensorFlow is imported only by the modules that
train or run models (``training``, ``keras_model``, ``prediction``), and only when called.
"""
