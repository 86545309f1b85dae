"""Loss maths as pure functions on tensors (no models, no state)."""

from keras_medgan.losses.adversarial import (ADVERSARIAL_LOSSES, get_adversarial_loss, hinge_discriminator_loss,
                                             hinge_generator_loss, least_squares_discriminator_loss,
                                             least_squares_generator_loss, vanilla_discriminator_loss,
                                             vanilla_generator_loss, wasserstein_discriminator_loss,
                                             wasserstein_generator_loss)
from keras_medgan.losses.penalties import gradient_penalty, path_length_penalty, path_lengths, r1_penalty
from keras_medgan.losses.reconstruction import feature_matching_loss, l1_loss, roi_l1_loss
from keras_medgan.losses.guidance import (content_loss, gaussian_kernel, gaussian_mmd2, gram_matrix,
                                          inception_score_loss, style_content_loss, style_loss)
