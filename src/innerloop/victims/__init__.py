"""Pre-trained victim classifiers for LFT's few-shot universal adversarial perturbations (spec section 12).

    from innerloop.victims import train_victim, load_victim, correctly_classified
    train_victim("mnist", "/data", "victims/mnist")          # trains once, reuses victim.pt afterwards
    model, meta = load_victim("victims/mnist")               # eval mode, parameters frozen
    pool = correctly_classified(model, test.images, test.labels)

Victims take float32 images in ``[0, 1]`` (uint8 / 255) with no normalisation layer, so an
attacker feeds ``clamp(x + delta, 0, 1)`` directly. Command line: ``innerloop victim train``.
"""

from innerloop.victims.model import accuracy, build_model, correctly_classified, load_victim, predict, to_unit
from innerloop.victims.train import RECIPES, Recipe, train_victim

__all__ = ["train_victim", "load_victim", "correctly_classified", "predict", "accuracy", "to_unit",
           "build_model", "RECIPES", "Recipe"]
