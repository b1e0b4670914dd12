"""The benchmark's workloads, shared by the training benchmark (:mod:`sweepbook.bench`) and the
render benchmark (:mod:`sweepbook.bench_render`): experiment files as text, fixed so that
numbers compare across machines and commits.
"""

DIGITS_EXPERIMENT = """
[data]
name = "digits"
val_fraction = 0.15
test_fraction = 0.15
split_seed = 0
[model]
kind = "mlp"
widths = [128, 64]
activation = "relu"
[optimizer]
name = "adam"
learning_rate = 1e-3
b1 = 0.9
b2 = 0.999
eps = 1e-8
[train]
epochs = 10
batch_size = 32
"""
MNIST_EXPERIMENT = (
    DIGITS_EXPERIMENT.replace('name = "digits"', 'name = "mnist5k"')
    .replace("widths = [128, 64]", "widths = [784]")
    .replace("batch_size = 32", "batch_size = 256")
)
# LeNet-5 as the course's batch-size study trains it: 3,500 MNIST-5k training images, batch 32.
LENET5_EXPERIMENT = (
    DIGITS_EXPERIMENT.replace('name = "digits"', 'name = "mnist5k"')
    .replace("val_fraction = 0.15", "val_fraction = 0.1")
    .replace("test_fraction = 0.15", "test_fraction = 0.2")
    .replace('kind = "mlp"\nwidths = [128, 64]', 'kind = "lenet5"')
    .replace("epochs = 10", "epochs = 2")
)
# The small CNN (two 3x3 convolutions, 32 and 64 filters) does ~9x LeNet-5's work per image.
CNN_EXPERIMENT = (
    LENET5_EXPERIMENT.replace('kind = "lenet5"', 'kind = "cnn"')
    .replace("split_seed = 0", "split_seed = 0\nmax_samples = 2000")
    .replace("epochs = 2", "epochs = 1")
)
