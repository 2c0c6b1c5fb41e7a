"""Training GAN-MoCo (`accelerate launch train/train.py ...`, or `python -m train.train` from the repository
root): train.py the loop, steps.py the losses of a step, networks.py the networks, streams.py the data, outputs.py
what a run writes. A package so that its parts import each other one way whichever way it is started."""
