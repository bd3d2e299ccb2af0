"""Network and trust: downloads over reused connections, the verified
package cache, and OpenPGP checks of signed metadata."""
