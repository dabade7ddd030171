"""Fine-tuning a pretrained DPED generator for another phone (``nhance-batch finetune``).

One module per concern: ``pairs`` (finding and checking the image pairs, the by-file split),
``patches`` (streamed random co-located patches), ``content`` (the content network by name),
``losses`` and ``discriminator`` (DPED's recipe), ``backend`` (gradients, compilation and Adam
on TensorFlow or JAX), ``train`` (the loop and the model it writes), ``state`` (the resumable
training state), ``metrics`` (validation PSNR/SSIM), ``export`` (the TF1 checkpoint writer),
``remote`` (training as a Ray actor).
"""
