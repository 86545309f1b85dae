"""`medgan-data`: dataset preparation for keras-medgan (a thin click CLI over keras_medgan.data)."""
