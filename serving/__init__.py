"""Ray Serve applications (thin): builders named by serving/config.yaml."""
