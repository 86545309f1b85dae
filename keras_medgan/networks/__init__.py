"""Network builders returning `keras.Model`s."""

from keras_medgan.networks.classifiers import domain_classifier
from keras_medgan.networks.dcgan import dcgan_discriminator, dcgan_generator
from keras_medgan.networks.patch_discriminator import patch_discriminator
from keras_medgan.networks.unet_generator import unet_generator

__all__ = ["domain_classifier", "patch_discriminator", "unet_generator"]
__all__ += ["dcgan_discriminator", "dcgan_generator"]
