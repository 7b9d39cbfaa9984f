"""Paper 002's ImageNet IB-INN layout (Tab. 1 / 6, App. A), for its parameter count and for users
with their own ImageNet pipeline (gcj ships none): a downsampling coupling with a 7x7 conv and a
Haar transform (224 -> 56, 48 channels), levels of 3, 4, 6, 3 coupling blocks at 56, 28, 14, 7
pixels, each level after the first opened by a downsampling coupling (where ResNet-50's stages
downsample; counted apart from the blocks: 55.57M network parameters, the paper's 55.4M), ResNet-50
bottleneck subnetworks (widths 64, 128, 256, 512, expansion 4) with a final 1x1 projection, DCT
pooling to 150,528 dimensions, no fully connected coupling; low-rank class means with K = 128
prototypes; label smoothing 0.05, SGD 0.07. `:smoke` keeps the layout at 32x32 pixels.

    python train.py --config configs/ibinn_imagenet.py --workdir workdirs/ibinn_imagenet \
        --config.data.data_dir=...  # needs an ImageNet loader gcj does not have
"""
from gcj.recipes import ibinn_config


def get_config(arg=None):
    c = ibinn_config("cifar10", arg)  # the SGD recipe; the data fields are replaced below
    c.data.update(dict(name="imagenet2012", image_size=224, channels=3, num_classes=1000,
                       val_size=0, crop_padding=0, flip=True))
    c.model.ibinn.update(dict(entry="downsample_haar", entry_width=64, entry_kernel=7,
                              widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), bottleneck=True,
                              fc_blocks=0, rank=128, label_smoothing=0.05))
    c.batch_size = 384  # 64 per GPU on 6 GPUs
    if arg == "smoke":
        c.data.update(dict(image_size=32, num_classes=10))
        c.model.ibinn.update(dict(entry_width=4, widths=(4, 8), blocks=(1, 1), rank=4))
        c.batch_size = 16
    return c
