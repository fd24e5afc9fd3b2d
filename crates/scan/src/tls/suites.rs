//! The TLS 1.0–1.2 cipher suites the probe offers, with what the grade and
//! the findings need to know of each: key exchange, cipher strength in
//! bits, whether it is an AEAD. IANA numbers and names; this is a table of
//! facts, not cryptography.

/// How the suite agrees on keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kx {
    /// The client encrypts to the certificate's RSA key: no forward secrecy.
    Rsa,
    Dhe,
    Ecdhe,
    /// No authentication at all: anyone in the middle can read everything.
    Anon,
    /// Export-grade (512-bit) keys, breakable since the 1990s.
    Export,
}

/// The bulk cipher's family, for findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    AesGcm,
    Chacha,
    AesCcm,
    AesCbc,
    AriaGcm,
    CamelliaCbc,
    Seed,
    Idea,
    TripleDes,
    Des,
    Rc4,
    Rc2,
    Null,
}

#[derive(Debug, Clone, Copy)]
pub struct Suite {
    pub id: u16,
    pub name: &'static str,
    pub kx: Kx,
    pub cipher: Cipher,
    /// Effective strength in bits (3DES counts 112, export 40, NULL 0).
    pub bits: u16,
}

impl Suite {
    pub fn aead(&self) -> bool {
        matches!(
            self.cipher,
            Cipher::AesGcm | Cipher::Chacha | Cipher::AesCcm | Cipher::AriaGcm
        )
    }

    pub fn forward_secret(&self) -> bool {
        matches!(self.kx, Kx::Dhe | Kx::Ecdhe)
    }

    /// 64-bit block ciphers (Sweet32).
    pub fn block64(&self) -> bool {
        matches!(
            self.cipher,
            Cipher::TripleDes | Cipher::Des | Cipher::Idea | Cipher::Rc2
        )
    }

    /// No secrecy or no authentication at all: export, anonymous, or null.
    pub fn insecure(&self) -> bool {
        matches!(self.kx, Kx::Export | Kx::Anon) || self.cipher == Cipher::Null
    }

    /// Encrypts, but with a broken cipher: 64-bit blocks or RC4.
    pub fn weak(&self) -> bool {
        (self.block64() || self.cipher == Cipher::Rc4) && !self.insecure()
    }
}

macro_rules! suites {
    ($(($id:expr, $name:expr, $kx:ident, $c:ident, $bits:expr)),* $(,)?) => {
        /// Every suite the probe knows, strongest first.
        pub const SUITES: &[Suite] = &[
            $(Suite { id: $id, name: $name, kx: Kx::$kx, cipher: Cipher::$c, bits: $bits }),*
        ];
    };
}

#[rustfmt::skip]
suites![
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", Ecdhe, AesGcm, 256),
    (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", Ecdhe, Chacha, 256),
    (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Ecdhe, AesGcm, 256),
    (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Ecdhe, Chacha, 256),
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Ecdhe, AesGcm, 128),
    (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Ecdhe, AesGcm, 128),
    (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", Ecdhe, AesCcm, 256),
    (0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", Ecdhe, AesCcm, 256),
    (0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384", Ecdhe, AriaGcm, 256),
    (0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384", Ecdhe, AriaGcm, 256),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", Ecdhe, AesCcm, 128),
    (0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", Ecdhe, AesCcm, 128),
    (0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256", Ecdhe, AriaGcm, 128),
    (0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256", Ecdhe, AriaGcm, 128),
    (0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", Ecdhe, AesCbc, 256),
    (0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", Ecdhe, AesCbc, 256),
    (0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", Ecdhe, AesCbc, 256),
    (0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", Ecdhe, AesCbc, 256),
    (0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", Ecdhe, AesCbc, 128),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", Ecdhe, AesCbc, 128),
    (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Ecdhe, AesCbc, 128),
    (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", Ecdhe, AesCbc, 128),
    (0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384", Ecdhe, CamelliaCbc, 256),
    (0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384", Ecdhe, CamelliaCbc, 256),
    (0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256", Ecdhe, CamelliaCbc, 128),
    (0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", Ecdhe, CamelliaCbc, 128),
    (0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", Dhe, AesGcm, 256),
    (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", Dhe, AesGcm, 256),
    (0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Dhe, Chacha, 256),
    (0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", Dhe, AesGcm, 128),
    (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", Dhe, AesGcm, 128),
    (0xC057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384", Dhe, AriaGcm, 256),
    (0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM", Dhe, AesCcm, 256),
    (0xC0A3, "TLS_DHE_RSA_WITH_AES_256_CCM_8", Dhe, AesCcm, 256),
    (0xC053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384", Dhe, AriaGcm, 256),
    (0xC056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256", Dhe, AriaGcm, 128),
    (0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM", Dhe, AesCcm, 128),
    (0xC0A2, "TLS_DHE_RSA_WITH_AES_128_CCM_8", Dhe, AesCcm, 128),
    (0xC052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256", Dhe, AriaGcm, 128),
    (0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", Dhe, AesCbc, 256),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", Dhe, AesCbc, 256),
    (0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", Dhe, AesCbc, 256),
    (0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", Dhe, AesCbc, 128),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", Dhe, AesCbc, 128),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", Dhe, AesCbc, 128),
    (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", Dhe, CamelliaCbc, 256),
    (0x00C4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256", Dhe, CamelliaCbc, 256),
    (0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", Dhe, CamelliaCbc, 128),
    (0x00BE, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", Dhe, CamelliaCbc, 128),
    (0x009A, "TLS_DHE_RSA_WITH_SEED_CBC_SHA", Dhe, Seed, 128),
    (0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", Rsa, AesGcm, 256),
    (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", Rsa, AesGcm, 128),
    (0xC09D, "TLS_RSA_WITH_AES_256_CCM", Rsa, AesCcm, 256),
    (0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8", Rsa, AesCcm, 256),
    (0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384", Rsa, AriaGcm, 256),
    (0xC09C, "TLS_RSA_WITH_AES_128_CCM", Rsa, AesCcm, 128),
    (0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8", Rsa, AesCcm, 128),
    (0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256", Rsa, AriaGcm, 128),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", Rsa, AesCbc, 256),
    (0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256", Rsa, AesCbc, 256),
    (0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA", Rsa, AesCbc, 128),
    (0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256", Rsa, AesCbc, 128),
    (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", Rsa, CamelliaCbc, 256),
    (0x00C0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256", Rsa, CamelliaCbc, 256),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", Rsa, CamelliaCbc, 128),
    (0x00BA, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256", Rsa, CamelliaCbc, 128),
    (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA", Rsa, Idea, 128),
    (0x0096, "TLS_RSA_WITH_SEED_CBC_SHA", Rsa, Seed, 128),
    (0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384", Anon, AesGcm, 256),
    (0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256", Anon, AesGcm, 128),
    (0xC05B, "TLS_DH_anon_WITH_ARIA_256_GCM_SHA384", Anon, AriaGcm, 256),
    (0xC05A, "TLS_DH_anon_WITH_ARIA_128_GCM_SHA256", Anon, AriaGcm, 128),
    (0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA", Anon, AesCbc, 256),
    (0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256", Anon, AesCbc, 256),
    (0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA", Anon, AesCbc, 256),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA", Anon, AesCbc, 128),
    (0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256", Anon, AesCbc, 128),
    (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", Anon, AesCbc, 128),
    (0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA", Anon, CamelliaCbc, 256),
    (0x00C5, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256", Anon, CamelliaCbc, 256),
    (0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA", Anon, CamelliaCbc, 128),
    (0x00BF, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256", Anon, CamelliaCbc, 128),
    (0x009B, "TLS_DH_anon_WITH_SEED_CBC_SHA", Anon, Seed, 128),
    (0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", Ecdhe, TripleDes, 112),
    (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", Ecdhe, TripleDes, 112),
    (0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", Ecdhe, Rc4, 128),
    (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA", Ecdhe, Rc4, 128),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", Dhe, TripleDes, 112),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA", Dhe, Des, 56),
    (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", Rsa, TripleDes, 112),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5", Rsa, Rc4, 128),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA", Rsa, Rc4, 128),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA", Rsa, Des, 56),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", Export, Rc4, 40),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", Export, Des, 40),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", Export, Des, 40),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", Export, Rc2, 40),
    (0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA", Anon, TripleDes, 112),
    (0xC017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA", Anon, TripleDes, 112),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5", Anon, Rc4, 128),
    (0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", Ecdhe, Null, 0),
    (0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA", Ecdhe, Null, 0),
    (0x0001, "TLS_RSA_WITH_NULL_MD5", Rsa, Null, 0),
    (0x0002, "TLS_RSA_WITH_NULL_SHA", Rsa, Null, 0),
    (0x003B, "TLS_RSA_WITH_NULL_SHA256", Rsa, Null, 0),
];

pub fn by_id(id: u16) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.id == id)
}

/// TLS 1.3's suites, by IANA number: (name, bits).
pub fn tls13(id: u16) -> Option<(&'static str, u16)> {
    match id {
        0x1301 => Some(("TLS_AES_128_GCM_SHA256", 128)),
        0x1302 => Some(("TLS_AES_256_GCM_SHA384", 256)),
        0x1303 => Some(("TLS_CHACHA20_POLY1305_SHA256", 256)),
        0x1304 => Some(("TLS_AES_128_CCM_SHA256", 128)),
        0x1305 => Some(("TLS_AES_128_CCM_8_SHA256", 128)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_names_are_unique() {
        let mut ids: Vec<u16> = super::SUITES.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), super::SUITES.len());
        let mut names: Vec<&str> = super::SUITES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::SUITES.len());
    }
}
