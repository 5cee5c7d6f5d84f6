"""The embedded Wan worlds: a neutral-motion corpus, the build (VAE + transformer) and its evaluation."""
