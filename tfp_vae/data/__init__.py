"""Image datasets for VAEs: file formats, sources, datasets, input pipeline.

  formats.py   readers of the file formats: `read_amat`, `read_idx`,
               `read_mat_v5`, and `DataError`.
  sources.py   where the files are: data_dir, system location, download
               cache, download.
  datasets.py  `load_dataset` (read, check, split), `load_data` (the dataset
               of a `TrainConfig`), `check_pixels`, `ImageDataset`.
  image_files.py  a user's image files as model inputs: `load_image_files`,
               `binarize`.
  pipeline.py  the one input pipeline: `make_training_dataset` and
               `make_evaluation_dataset`, what training and evaluation read.

#### Examples

```python
from tfp_vae import data

dataset = data.load_dataset('fashion_mnist', seed=1)
batches = data.make_training_dataset(dataset.train_images, 128, seed=1,
                                     dynamic_binarization=True)
```
"""

from tfp_vae.data.datasets import check_pixels
from tfp_vae.data.datasets import ImageDataset
from tfp_vae.data.datasets import load_data
from tfp_vae.data.datasets import load_dataset
from tfp_vae.data.datasets import load_grey_images
from tfp_vae.data.formats import DataError
from tfp_vae.data.formats import read_amat
from tfp_vae.data.formats import read_idx
from tfp_vae.data.formats import read_mat_v5
from tfp_vae.data.image_files import binarize
from tfp_vae.data.image_files import load_image_files
from tfp_vae.data.pipeline import make_evaluation_dataset
from tfp_vae.data.pipeline import make_training_dataset
from tfp_vae.data.sources import DOWNLOAD_URL_BASES
from tfp_vae.data.sources import SYSTEM_DATA_DIRS
from tfp_vae.names import DATASET_NAMES

__all__ = [
    'DATASET_NAMES',
    'DOWNLOAD_URL_BASES',
    'DataError',
    'ImageDataset',
    'SYSTEM_DATA_DIRS',
    'binarize',
    'check_pixels',
    'load_data',
    'load_dataset',
    'load_grey_images',
    'load_image_files',
    'make_evaluation_dataset',
    'make_training_dataset',
    'read_amat',
    'read_idx',
    'read_mat_v5',
]
