"""Physics-based simulation of HAADF-STEM images of 2H-MX2 monolayers with point defects."""
