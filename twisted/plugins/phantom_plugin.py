"""The twistd plugin: ``twistd phantom --port 7402`` runs a Phantom node."""
from twisted.application.service import ServiceMaker

Phantom = ServiceMaker(
    "Phantom node", "phantom.tap", "A node of the Phantom anonymity network", "phantom"
)
