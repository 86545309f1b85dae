"""Downstream utility of synthetic images: classifiers, the augmentation / anonymization study protocol,
its statistics and its report (critical review, Bissoto et al. 2021; DermGAN Sec. 5)."""

from keras_medgan.evaluation.augmentation import AugmentationConfig, conventional_augmentation
from keras_medgan.evaluation.classifiers import CLASSIFIERS, ClassifierConfig, build_classifier
from keras_medgan.evaluation.locking import StudyLocked
from keras_medgan.evaluation.study import (ArmConfig, GroupConfig, SourceConfig, Study, StudyConfig,
                                           TestSetConfig, TestSetSelectionError, UnionImages, load_study_config)
from keras_medgan.evaluation.training import Rows, TrainingConfig, predict_probabilities, train_classifier

__all__ = ["AugmentationConfig", "conventional_augmentation", "CLASSIFIERS", "ClassifierConfig", "build_classifier",
           "ArmConfig", "GroupConfig", "SourceConfig", "Study", "StudyConfig", "TestSetConfig",
           "TestSetSelectionError", "UnionImages", "load_study_config", "StudyLocked", "Rows", "TrainingConfig",
           "predict_probabilities", "train_classifier"]
