"""The command-line scripts, installed as the package `tfp_vae_cli`.

`pip install` maps this directory to `tfp_vae_cli` (setup.cfg) and makes
each script's `run()` a console command: tfp-vae-train, tfp-vae-evaluate,
tfp-vae-compare, tfp-vae-sample. In a checkout, run them as files:
`python scripts/train.py`.
"""
