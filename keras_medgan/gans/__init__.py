"""GAN models: keras.Model subclasses whose train_step reads like the paper's algorithm."""

from keras_medgan.gans.conditional_dcgan import ConditionalDCGAN
from keras_medgan.gans.dermgan import DermGAN
from keras_medgan.gans.score_guided_gan import ScoreGuidedGAN, footnote3_schedule
