"""Where the copies live: the Destination, the S3 client, markers, object versions."""
