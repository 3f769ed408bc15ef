"""The client side of the rendezvous server's signalling protocol."""
