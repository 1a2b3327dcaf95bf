//! The architectures, as layer specs with PyTorch parameter names.

use lumen_core::model::{LayerKind as K, LayerSpec as L};

fn conv(name: &str, cin: usize, cout: usize, k: usize, pad: usize) -> L {
    L::new(name, K::Conv2d { in_channels: cin, out_channels: cout, kernel: k, stride: 1, padding: pad, bias: true })
}
fn fc(name: &str, i: usize, o: usize) -> L {
    L::new(name, K::Linear { in_features: i, out_features: o, bias: true })
}
fn relu(name: &str) -> L {
    L::new(name, K::Relu)
}
fn pool(name: &str) -> L {
    L::new(name, K::MaxPool2d { kernel: 2, stride: 2 })
}

/// conv1 1→32 5×5 pad 2, ReLU, maxpool 2; conv2 32→64 5×5 pad 2, ReLU, maxpool 2;
/// fc1 3136→128, ReLU; fc2 128→10.
pub fn mnist_cnn() -> Vec<L> {
    vec![
        conv("conv1", 1, 32, 5, 2),
        relu("relu1"),
        pool("pool1"),
        conv("conv2", 32, 64, 5, 2),
        relu("relu2"),
        pool("pool2"),
        L::new("flatten", K::Flatten),
        fc("fc1", 3136, 128),
        relu("relu3"),
        fc("fc2", 128, 10),
    ]
}

/// The CLEAR architecture: four 3×3 conv layers with two max-pools, then conv5 with
/// one 1×1 kernel per class and global average pooling.
pub fn mnist_allcnn() -> Vec<L> {
    vec![
        conv("conv1", 1, 32, 3, 1),
        relu("relu1"),
        conv("conv2", 32, 32, 3, 1),
        relu("relu2"),
        pool("pool1"),
        conv("conv3", 32, 64, 3, 1),
        relu("relu3"),
        conv("conv4", 64, 64, 3, 1),
        relu("relu4"),
        pool("pool2"),
        conv("conv5", 64, 10, 1, 0),
        L::new("gap", K::GlobalAvgPool),
    ]
}

/// Looks an architecture up by name.
pub fn by_name(name: &str) -> Option<Vec<L>> {
    match name {
        "mnist-cnn" | "mnist-cnn-noise" | "mnist-cnn-biased" => Some(mnist_cnn()),
        "mnist-allcnn" => Some(mnist_allcnn()),
        _ => None,
    }
}
