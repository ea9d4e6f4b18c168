"""Networks (pure ``nn.Module``s) and Lightning modules."""

from stem2d.models.nets import CamNet, SeedCNN

__all__ = ["CamNet", "SeedCNN"]
