"""ImageNet networks from `keras.applications`, taking keras-medgan images (in [-1, 1], grey or RGB).

Used as the classifier C of XRAY-GAN's UCGAN (ResNet-50, paper 004 Sec. 5.4), as its style loss network
(VGG-16, Johnson et al. 2016), and as downstream classifiers. ImageNet weights are downloaded by Keras to
``~/.keras/models`` on first use; ``weights="auto"`` falls back to random initialisation when they cannot be
had (an offline machine) and says so in the returned origin, so reports can state which was used.
"""

from __future__ import annotations

import keras

from keras_medgan.layers.imagenet_input import ImageNetInput

# name -> (keras.applications builder, preprocessing mode, weights file Keras downloads)
APPLICATIONS = {
    "resnet50": ("ResNet50", "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg16": ("VGG16", "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet": ("MobileNet", "tf", "mobilenet_1_0_224_tf_no_top.h5"),
    "efficientnet_b2": ("EfficientNetB2", "raw255", "efficientnetb2_notop.h5"),
    "inception_v3": ("InceptionV3", "tf", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
# Johnson et al. 2016, Sec. 3.3: style from relu1_2, relu2_2, relu3_3, relu4_3 of VGG-16 (Keras names the
# convolution, whose activation is the ReLU); content from relu2_2 (index 1).
VGG16_STYLE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
VGG16_CONTENT_INDEX = 1


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for and could not be loaded (typically: no internet)."""


def _check(name: str, weights) -> None:
    if name not in APPLICATIONS:
        raise ValueError(f"`name` must be one of {sorted(APPLICATIONS)}. Received: name={name!r}")
    if weights not in ("imagenet", "auto", None):
        raise ValueError(f"`weights` must be 'imagenet', 'auto' or None. Received: weights={weights!r}")


def imagenet_backbone(name: str, image_size: int, channels: int = 3, weights: str | None = "imagenet",
                      ) -> tuple[keras.Model, str]:
    """A `keras.applications` network without its top, on images in [-1, 1].

    The preprocessing (`layers.ImageNetInput`) and the backbone's layers are one flat functional graph, so
    intermediate layers can be read with `get_layer(...)` (style features, `networks.dcgan` style heads).

    Args:
        name: str. One of `APPLICATIONS`: `"resnet50"`, `"vgg16"`, `"mobilenet"`, `"efficientnet_b2"`,
            `"inception_v3"`.
        image_size: int. Input side in pixels (at least 32; 75 for InceptionV3).
        channels: int. 1 (repeated to RGB inside) or 3.
        weights: `"imagenet"` (raise `PretrainedWeightsUnavailable` if they cannot be loaded), `"auto"`
            (ImageNet if possible, else random initialisation) or None (random). Defaults to `"imagenet"`.

    Returns:
        `(model, origin)`: the model maps `[B, S, S, channels]` to the last feature map; `origin` is
        `"imagenet (<file>)"` or `"random init"` plus the reason when `"auto"` fell back.
    """
    _check(name, weights)
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    builder_name, mode, filename = APPLICATIONS[name]
    builder = getattr(keras.applications, builder_name)

    def build(w):
        inputs = keras.Input((image_size, image_size, channels), name="image")
        x = ImageNetInput(mode, name="imagenet_input")(inputs)
        base = builder(include_top=False, weights=w, input_tensor=x)
        return keras.Model(inputs, base.output, name=f"{name}_backbone")

    if weights is None:
        return build(None), "random init"
    try:
        return build("imagenet"), f"imagenet ({filename})"
    except Exception as e:  # Keras raises a bare Exception when the download fails
        reason = f"{type(e).__name__}: {str(e)[:160]}"
        if weights == "auto":
            return build(None), f"random init (ImageNet weights unavailable: {reason})"
        raise PretrainedWeightsUnavailable(
            f"could not load the {builder_name} ImageNet weights: Keras downloads {filename} to ~/.keras/models on "
            f"first use and this machine appears to be offline ({reason}). Copy that file into ~/.keras/models/ "
            "from a machine with internet, or ask for weights='auto' (random initialisation when unavailable) or "
            "None.") from None


def imagenet_classifier(name: str, image_size: int, channels: int, num_classes: int,
                        weights: str | None = "auto", dropout_rate: float = 0.0) -> tuple[keras.Model, str]:
    """`imagenet_backbone` + global average pooling (the `features` layer) + dropout + a float32 softmax.

    Returns:
        `(model, origin)`; the model maps images in [-1, 1] to class probabilities `[B, num_classes]`.
    """
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2. Received: num_classes={num_classes}")
    backbone, origin = imagenet_backbone(name, image_size, channels, weights)
    x = keras.layers.GlobalAveragePooling2D(name="features")(backbone.output)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(backbone.input, probs, name=f"{name}_classifier"), origin


def vgg16_style_features(image_size: int, channels: int = 3, weights: str | None = "imagenet",
                         ) -> tuple[keras.Model, str]:
    """The style/content loss network of Johnson et al. 2016: VGG-16 relu1_2, relu2_2, relu3_3, relu4_3.

    Returns:
        `(model, origin)`; the model maps images in [-1, 1] to a list of four feature maps.
    """
    backbone, origin = imagenet_backbone("vgg16", image_size, channels, weights)
    outputs = [backbone.get_layer(n).output for n in VGG16_STYLE_LAYERS]
    return keras.Model(backbone.input, outputs, name="vgg16_style_features"), origin
