"""monai_coco.networks"""
