"""global_features: timm global image vectors with PCA whitening and alpha query expansion."""
