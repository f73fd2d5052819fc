//! wasm API of the Adversarial tab (MNIST classifier, FGSM, adversarial training).
