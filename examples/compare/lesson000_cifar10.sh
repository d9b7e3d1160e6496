#!/usr/bin/env bash
# Lesson 000: VGG6 learns CIFAR-10 in 3 epochs, VGG10 "learns nothing (10% is same as random
# guessing)"; the third entry adds BatchNorm after every conv of VGG10, which is what fixes it.
# Recipe of the lesson: Adam (lr 1e-3), batch 32, 3 epochs, 10% validation split, Keras init.
#   DATA=/tmp/data/cifar10 examples/compare/lesson000_cifar10.sh  (tar xzf ../shared/datasets/cifar10-jpg.tar.gz -C /tmp/data)
#   EPOCHS=1 SEEDS=1 examples/compare/lesson000_cifar10.sh  (a CPU-sized look: ~35M params each)
set -euo pipefail
cnnlab compare vgg6 vgg10 vgg10:batchnorm=true \
  --data "${DATA:-cifar10}" --optimizer adam --batch-size 32 --init keras \
  --epochs "${EPOCHS:-3}" --seeds "${SEEDS:-3}" \
  --out "${OUT:-comparisons/lesson000-cifar10}" "$@"
