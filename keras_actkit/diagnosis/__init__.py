"""`diagnose` and `check_model`: what is wrong with a model or its training run, and the cure."""

from keras_actkit.diagnosis.diagnose import diagnose
from keras_actkit.diagnosis.problems import KINDS, Attempt, Diagnosis, Problem
from keras_actkit.diagnosis.static import check_model

__all__ = ["KINDS", "Attempt", "Diagnosis", "Problem", "check_model", "diagnose"]
