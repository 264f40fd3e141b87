"""The xinfang shared library: what every service needs and nothing specific to one of them."""
