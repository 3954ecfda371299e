"""Where DenseNet121's training FLOPs run slowly: GFLOP/s of its typical layers, fp32, on all cores.

    python benchmarks/densenet_conv_probe.py            # ~1 min on 2 cores; quiet machine only

Times forward + backward (input and weight gradients) of single layers with DenseNet121's
shapes at 224 px, batch 16, beside an fp32 GEMM of the same FLOPs class; prints GFLOP/s
(median of 5 windows) per layer.  Training FLOPs = 3 x the forward multiply-adds x 2.
"""
import statistics
import time

import tensorflow as tf

BATCH = 16
# (name, spatial size, input channels, output channels, kernel)
LAYERS = [
    ("block1 1x1 bottleneck", 56, 128, 128, 1),
    ("block1 3x3 growth", 56, 128, 32, 3),
    ("block3 1x1 bottleneck", 14, 512, 128, 1),
    ("block3 3x3 growth", 14, 128, 32, 3),
    ("block4 3x3 growth", 7, 128, 32, 3),
]


def rate(fn, flops: float, repeats: int = 5, inner: int = 10) -> float:
    fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn()
        float(tf.reduce_sum(out[0] if isinstance(out, (list, tuple)) else out))
        rates.append(inner * flops / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


for name, size, cin, cout, k in LAYERS:
    x = tf.random.uniform([BATCH, size, size, cin])
    w = tf.Variable(tf.random.uniform([k, k, cin, cout]) * 0.01)

    @tf.function
    def step(x=x, w=w):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, 1, "SAME")
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x, w])

    flops = 3 * 2 * BATCH * size * size * cin * cout * k * k
    print(f"{name:24s} {size:3d}x{size:<3d} {cin:4d}->{cout:<4d} k{k}: {rate(step, flops):7.1f} GFLOP/s "
          f"({flops / 1e9:.2f} GFLOP per step)", flush=True)

a = tf.random.uniform([2048, 2048])
b = tf.random.uniform([2048, 2048])
print(f"{'fp32 GEMM 2048':24s}: {rate(tf.function(lambda: tf.matmul(a, b)), 2 * 2048 ** 3):7.1f} GFLOP/s")
