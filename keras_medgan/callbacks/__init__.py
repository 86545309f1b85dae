"""Training callbacks: exact-resume checkpoints, NaN stop, TensorBoard scalars and sample grids."""

from keras_medgan.callbacks.checkpoint import (CheckpointError, ResumableCheckpoint, latest_checkpoint,
                                               restore_checkpoint, save_checkpoint)
from keras_medgan.callbacks.monitoring import SampleGrid, StopOnNaN, TensorBoardScalars, image_grid
from keras_medgan.callbacks.evaluation import PeriodicEvaluation
