"""The names a user can choose, in one TensorFlow-free table.

Flags (`scripts/_flags.py`), configs (`config.py`) and data loading
(`data/`) all take their allowed values from here, so the three can never
disagree about which datasets, binarizations, posterior families or
strategies exist. Nothing here imports TensorFlow: a script can list its
choices (and `--help` can print them) before any TensorFlow op runs, which
`--num_cpu_devices` needs.

Each tuple lists its default first where the configs have none of their own.
"""

__all__ = [
    'ACTIVATIONS',
    'ARCHITECTURES',
    'BINARIZATIONS',
    'DATASET_BINARIZATIONS',
    'DATASET_CLASS_NAMES',
    'DATASET_IMAGE_SHAPES',
    'DATASET_NAMES',
    'EVALUATION_SPLITS',
    'GAP_EXAMPLES',
    'GAP_MAX_STEPS',
    'GAP_SAMPLES',
    'KL_ESTIMATORS',
    'LEARNING_RATE_SCHEDULES',
    'LIKELIHOODS',
    'METRIC_LABELS',
    'NORMAL_SCALES',
    'OBJECTIVES',
    'POSTERIORS',
    'PRIORS',
    'SPLITS',
    'STRATEGIES',
]

# Datasets, and the `[H, W, C]` shape of their images: what a model is built
# for before (or without) loading the data, e.g. to check how often
# `--architecture=conv` can halve it.
DATASET_IMAGE_SHAPES = {
    'binarized_mnist': (28, 28, 1),
    'mnist': (28, 28, 1),
    'fashion_mnist': (28, 28, 1),
    'frey_face': (28, 20, 1),
}
DATASET_NAMES = tuple(DATASET_IMAGE_SHAPES)

# How pixels become the values a model sees. 'static': the files hold
# {0, 1} pixels; 'dynamic': grey levels, binarized afresh for every training
# batch (and once, seeded, for evaluation); 'none': grey levels as they are.
BINARIZATIONS = ('static', 'dynamic', 'none')
# The binarizations each dataset allows; the first is its default.
DATASET_BINARIZATIONS = {
    'binarized_mnist': ('static',),
    'mnist': ('dynamic', 'none'),
    'fashion_mnist': ('dynamic', 'none'),
    'frey_face': ('none',),
}

# The name of each class label, for legends, of the datasets whose labels
# are not self-explanatory (MNIST's label is its digit; binarized_mnist and
# frey_face have no labels). Xiao et al. (2017), Table 1.
DATASET_CLASS_NAMES = {
    'fashion_mnist': ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                      'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'),
}

SPLITS = ('train', 'validation', 'test')
# The same splits in the order a trained model is scored on them: the
# default, test, first.
EVALUATION_SPLITS = ('test', 'validation', 'train')

# Model.
POSTERIORS = ('diag', 'full_cov', 'low_rank', 'iaf', 'deterministic')
LIKELIHOODS = ('bernoulli', 'normal')
NORMAL_SCALES = ('per_pixel', 'predicted')
PRIORS = ('normal', 'mixture')
KL_ESTIMATORS = ('analytic', 'mc')
OBJECTIVES = ('elbo', 'iwae')
ARCHITECTURES = ('mlp', 'gated_mlp', 'conv')
ACTIVATIONS = ('relu', 'elu', 'tanh', 'softplus', 'swish', 'linear')

# Learning-rate schedules (`schedules.learning_rate_schedule`), the default
# first.
LEARNING_RATE_SCHEDULES = ('constant', 'burda', 'exponential', 'step',
                           'cosine', 'plateau')

# `tf.distribute` strategies, as `distribute.make_strategy` names them.
STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker', 'tpu')

# The files of a model directory (`runs` describes them).
CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
HISTORY_FILE = 'history.json'
METRICS_CSV_FILE = 'metrics.csv'
FINAL_METRICS_FILE = 'final_metrics.json'
MODEL_FILE = 'model.keras'
TENSORBOARD_DIR = 'tensorboard'
PLOTS_DIR = 'plots'

# Defaults of the inference-gap analysis (`evaluation.gap_analysis`) and of
# the scripts' --gap_* flags; `evaluation.local_fit` says why these values.
GAP_EXAMPLES = 100
GAP_MAX_STEPS = 2000
GAP_SAMPLES = 10

# TrainConfig settings that may differ when a run is resumed: they change how
# or how long it runs, not what it computes step by step. The others define
# the trained model (and its default directory name, `run_summary`).
RESUMABLE_SETTINGS = ('epochs', 'data_dir', 'model_dir', 'strategy',
                      'jit_compile', 'steps_per_execution',
                      'checkpoint_every_steps', 'keep_checkpoints',
                      'early_stopping_patience', 'num_importance_samples',
                      'max_steps')

# The evaluation metrics a table shows, in order, with their labels:
# evaluate.py's table and train.py's closing summary.
METRIC_LABELS = (
    ('log_likelihood', 'log p(x), importance sampled'),
    ('elbo', 'ELBO'),
    ('gap', 'log p(x) - ELBO'),
    ('kl', 'KL(q(z|x) || p(z))'),
    ('nll', '-E_q log p(x|z)'),
    ('active_units', 'active units'),
    ('mean_abs_offdiag_correlation', 'mean |posterior correlation|'),
    ('kl_to_diagonal', 'KL(q || diagonal q)'),
)
