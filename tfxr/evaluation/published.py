"""Published reference numbers tfxr's reports print beside their own (data tables only).

Each table names its paper and the table it copies; the values are the paper's, unchanged.
"""
from __future__ import annotations

#: Wang et al. 2017, "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on
#: Weakly-Supervised Classification and Localization of Common Thorax Diseases" (CVPR),
#: Table 4: localization accuracy ("Acc.") at each T(IoBB), ResNet-50 heatmaps, on NIH's
#: box-annotated images.
WANG2017_TABLE4_ACC = {
    0.1: {"Atelectasis": 0.7277, "Cardiomegaly": 0.9931, "Effusion": 0.7124, "Infiltration": 0.7886,
          "Mass": 0.4352, "Nodule": 0.1645, "Pneumonia": 0.7500, "Pneumothorax": 0.4591},
    0.25: {"Atelectasis": 0.5500, "Cardiomegaly": 0.9794, "Effusion": 0.5424, "Infiltration": 0.5772,
           "Mass": 0.2823, "Nodule": 0.0506, "Pneumonia": 0.5583, "Pneumothorax": 0.3469},
    0.5: {"Atelectasis": 0.2833, "Cardiomegaly": 0.8767, "Effusion": 0.3333, "Infiltration": 0.4227,
          "Mass": 0.1411, "Nodule": 0.0126, "Pneumonia": 0.3833, "Pneumothorax": 0.1836},
    0.75: {"Atelectasis": 0.1666, "Cardiomegaly": 0.7260, "Effusion": 0.2418, "Infiltration": 0.3252,
           "Mass": 0.1176, "Nodule": 0.0126, "Pneumonia": 0.2583, "Pneumothorax": 0.1020},
    0.9: {"Atelectasis": 0.1333, "Cardiomegaly": 0.6849, "Effusion": 0.2091, "Infiltration": 0.2520,
          "Mass": 0.0588, "Nodule": 0.0126, "Pneumonia": 0.2416, "Pneumothorax": 0.0816},
}

#: The same table's "AFP" rows: the average number of false-positive boxes per image.
WANG2017_TABLE4_AFP = {
    0.1: {"Atelectasis": 0.8323, "Cardiomegaly": 0.3506, "Effusion": 0.7998, "Infiltration": 0.5589,
          "Mass": 0.6423, "Nodule": 0.6047, "Pneumonia": 0.9055, "Pneumothorax": 0.4776},
    0.25: {"Atelectasis": 0.9167, "Cardiomegaly": 0.4553, "Effusion": 0.8598, "Infiltration": 0.6077,
           "Mass": 0.6707, "Nodule": 0.6158, "Pneumonia": 0.9614, "Pneumothorax": 0.5000},
    0.5: {"Atelectasis": 1.0203, "Cardiomegaly": 0.5630, "Effusion": 0.9268, "Infiltration": 0.6585,
          "Mass": 0.6941, "Nodule": 0.6189, "Pneumonia": 1.0132, "Pneumothorax": 0.5285},
    0.75: {"Atelectasis": 1.0619, "Cardiomegaly": 0.6616, "Effusion": 0.9603, "Infiltration": 0.6921,
           "Mass": 0.7043, "Nodule": 0.6199, "Pneumonia": 1.0569, "Pneumothorax": 0.5396},
    0.9: {"Atelectasis": 1.0752, "Cardiomegaly": 0.7226, "Effusion": 0.9797, "Infiltration": 0.7124,
          "Mass": 0.7144, "Nodule": 0.6199, "Pneumonia": 1.0732, "Pneumothorax": 0.5437},
}
