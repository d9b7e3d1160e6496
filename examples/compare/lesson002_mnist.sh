#!/usr/bin/env bash
# Lesson 002: LeNet-5, the Inception mini-net, the mini ResNet and the mini ResNet with BN on MNIST,
# with the lesson's recipe: SGD lr 0.1 without momentum, batch 256, 5 epochs, 50k/10k/10k split,
# Keras initialization (Glorot uniform, zero biases).
# Lesson (tf.keras, one run each): 98.19% / 97.91% / 98.45% / 96.91% test accuracy.
#   DATA=/tmp/data/mnist examples/compare/lesson002_mnist.sh  (tar xzf ../shared/datasets/mnist-png.tar.gz -C /tmp/data)
#   EPOCHS=1 SEEDS=1 examples/compare/lesson002_mnist.sh                (a quick look)
set -euo pipefail
cnnlab compare lenet5 inception_mini mini_resnet mini_resnet_bn \
  --data "${DATA:-mnist}" --val-split 0.1666667 \
  --optimizer sgd --lr 0.1 --momentum 0 --batch-size 256 --init keras \
  --epochs "${EPOCHS:-5}" --seeds "${SEEDS:-3}" \
  --out "${OUT:-comparisons/lesson002-mnist}" "$@"
