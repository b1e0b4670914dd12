import numpy as np


def plain_function(probabilities, labels):
    """A metric without @sweepbook.metric: its direction is unknown."""
    return float(np.mean(probabilities.argmax(axis=1) == labels))
