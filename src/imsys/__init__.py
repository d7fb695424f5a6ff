"""imsys – the German intelligent metering system (iMSys) around the BSI Smart Meter Gateway."""

__version__ = "0.1.0"
