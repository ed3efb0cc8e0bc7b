//! [`CacheKey`]: the stable encoding of a typed key into the key bytes of a [`cache_core::Key`].

use std::{borrow::Cow, rc::Rc, sync::Arc};

use bytes::Bytes;

/// A typed key's encoding into key bytes: the bytes a persistent tier stores and hashes.
///
/// The encoding is part of the stored data, so it is **stable**: the same value gives the same
/// bytes in every process, on every platform and in every later version of this crate. It is
/// not [`std::hash::Hash`], whose output may change between Rust releases and whose
/// implementations for `str` and integers are not byte encodings; and it is not the value's
/// `Debug` or `Display` form. Two different values of one type give different bytes
/// (the encoding is injective), so two keys never share an entry.
///
/// The encodings this crate provides:
///
/// | type | key bytes |
/// | --- | --- |
/// | `str`, `String`, `[u8]`, `Vec<u8>`, `Bytes`, `[u8; N]` | the bytes themselves (so a typed `String` key reads the same entry as `Key::new(namespace, "…")`) |
/// | `u8` … `u128`, `i8` … `i128` | little-endian, fixed width |
/// | `bool` | one byte, `0` or `1` |
/// | `char` | its scalar value as a little-endian `u32` |
/// | `Option<T>` | `0`, or `1` followed by `T`'s part encoding |
/// | tuples of up to four keys | every element's part encoding but the last, then the last element's encoding |
/// | `&T`, `Box<T>`, `Rc<T>`, `Arc<T>`, `Cow<T>` | `T`'s encoding |
///
/// A *part encoding* ([`CacheKey::encode_key_part`]) is self-delimiting: fixed-width types
/// write their bytes, variable-length ones a little-endian `u32` length first. That is what
/// keeps `("ab", "c")` and `("a", "bc")` apart.
///
/// # Implementing
///
/// Write a fixed, documented byte layout in [`CacheKey::encode_key`], usually by encoding the
/// fields as a tuple would (each but the last with [`CacheKey::encode_key_part`]). Override
/// [`CacheKey::encode_key_part`] only for a fixed-width encoding. Never change the layout of a
/// type whose entries are stored: change the namespace instead.
///
/// ```
/// use cache_typed::CacheKey;
///
/// struct Prompt { model: String, temperature_milli: u32, text: String }
///
/// impl CacheKey for Prompt {
///     fn encode_key(&self, out: &mut Vec<u8>) {
///         self.model.encode_key_part(out);
///         self.temperature_milli.encode_key_part(out);
///         self.text.encode_key(out);
///     }
/// }
///
/// let p = Prompt { model: "m1".into(), temperature_milli: 700, text: "6 x 7?".into() };
/// let mut bytes = Vec::new();
/// p.encode_key(&mut bytes);
/// assert_eq!(bytes, b"\x02\0\0\0m1\xbc\x02\0\06 x 7?");
/// ```
pub trait CacheKey {
    /// Appends the key's encoding to `out`.
    ///
    /// ```
    /// use cache_typed::CacheKey;
    /// let mut out = Vec::new();
    /// 42u16.encode_key(&mut out);
    /// "a".encode_key(&mut out);
    /// assert_eq!(out, [42, 0, b'a']);
    /// ```
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Appends a self-delimiting encoding, for a key that is followed by more key bytes (a
    /// tuple element, a struct field). The default writes the length of
    /// [`CacheKey::encode_key`]'s bytes as a little-endian `u32`, then those bytes.
    ///
    /// ```
    /// use cache_typed::CacheKey;
    /// let mut out = Vec::new();
    /// "ab".encode_key_part(&mut out);
    /// 7u8.encode_key_part(&mut out); // fixed width: no length
    /// assert_eq!(out, [2, 0, 0, 0, b'a', b'b', 7]);
    /// ```
    fn encode_key_part(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        self.encode_key(out);
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// The key's encoding as a new buffer.
    ///
    /// ```
    /// use cache_typed::CacheKey;
    /// assert_eq!(("a", 1u8).to_key_bytes(), [1, 0, 0, 0, b'a', 1]);
    /// ```
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_key(&mut out);
        out
    }
}

macro_rules! bytes_key {
    ($($ty:ty),*) => {$(
        impl CacheKey for $ty {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(AsRef::<[u8]>::as_ref(self));
            }
        }
    )*};
}
bytes_key!(str, String, [u8], Vec<u8>, Bytes);

impl<const N: usize> CacheKey for [u8; N] {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn encode_key_part(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

macro_rules! int_key {
    ($($ty:ty),*) => {$(
        impl CacheKey for $ty {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn encode_key_part(&self, out: &mut Vec<u8>) {
                self.encode_key(out);
            }
        }
    )*};
}
int_key!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl CacheKey for bool {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn encode_key_part(&self, out: &mut Vec<u8>) {
        self.encode_key(out);
    }
}

impl CacheKey for char {
    fn encode_key(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode_key(out);
    }

    fn encode_key_part(&self, out: &mut Vec<u8>) {
        self.encode_key(out);
    }
}

impl<T: CacheKey> CacheKey for Option<T> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_key_part(out);
            }
        }
    }
}

macro_rules! forward_key {
    ($($ty:ty),*) => {$(
        impl<T: CacheKey + ?Sized> CacheKey for $ty {
            fn encode_key(&self, out: &mut Vec<u8>) {
                (**self).encode_key(out);
            }

            fn encode_key_part(&self, out: &mut Vec<u8>) {
                (**self).encode_key_part(out);
            }
        }
    )*};
}
forward_key!(&T, Box<T>, Rc<T>, Arc<T>);

impl<T: CacheKey + ToOwned + ?Sized> CacheKey for Cow<'_, T> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        (**self).encode_key(out);
    }

    fn encode_key_part(&self, out: &mut Vec<u8>) {
        (**self).encode_key_part(out);
    }
}

macro_rules! tuple_key {
    ($($name:ident)+ ; $last:ident) => {
        impl<$($name: CacheKey,)+ $last: CacheKey> CacheKey for ($($name,)+ $last) {
            #[allow(non_snake_case, reason = "the type parameters name the elements")]
            fn encode_key(&self, out: &mut Vec<u8>) {
                let ($($name,)+ $last) = self;
                $($name.encode_key_part(out);)+
                $last.encode_key(out);
            }
        }
    };
}
tuple_key!(A; B);
tuple_key!(A B; C);
tuple_key!(A B C; D);

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(k: &impl CacheKey) -> Vec<u8> {
        k.to_key_bytes()
    }

    /// The encodings are stored data: these bytes must never change.
    #[test]
    fn encodings_are_fixed() {
        assert_eq!(bytes(&"abc"), b"abc");
        assert_eq!(bytes(&String::from("abc")), b"abc");
        assert_eq!(bytes(&Bytes::from_static(b"\0\xff")), b"\0\xff");
        assert_eq!(bytes(&0x0102_0304u32), [4, 3, 2, 1]);
        assert_eq!(bytes(&-1i16), [0xff, 0xff]);
        assert_eq!(bytes(&u128::MAX).len(), 16);
        assert_eq!(bytes(&true), [1]);
        assert_eq!(bytes(&'é'), [0xe9, 0, 0, 0]);
        assert_eq!(bytes(&None::<u8>), [0]);
        assert_eq!(bytes(&Some("x")), [1, 1, 0, 0, 0, b'x']);
        assert_eq!(bytes(&[7u8, 8]), [7, 8]);
        assert_eq!(bytes(&(1u8, "z", 2u16)), [1, 1, 0, 0, 0, b'z', 2, 0]);
        assert_eq!(bytes(&(1u8, 2u8, 3u8, "end")), [1, 2, 3, b'e', b'n', b'd']);
        assert_eq!(bytes(&Arc::new("a")), b"a");
        assert_eq!(bytes(&Cow::Borrowed("a")), b"a");
    }

    #[test]
    fn tuples_keep_the_split() {
        assert_ne!(bytes(&("ab", "c")), bytes(&("a", "bc")));
        assert_ne!(bytes(&(Some(1u8), "")), bytes(&(None::<u8>, "\x01")));
        assert_ne!(bytes(&(("a", "b"), "c")), bytes(&("a", ("b", "c"))));
    }
}
