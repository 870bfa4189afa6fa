//! Just enough ELF64 to list a binary's sections: is it stripped (no
//! `.symtab`), and where do its bytes go (`.text`, `.rodata`, ...).

/// One section header: its name and its size in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub size: u64,
}

/// `SHT_NOBITS` sections (`.bss`) take no room in the file.
const SHT_NOBITS: u32 = 8;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The sections of a little-endian ELF64 file, with their on-disk sizes
/// (0 for `SHT_NOBITS`).
pub fn sections(b: &[u8]) -> Result<Vec<Section>, String> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let bad = || "truncated or malformed ELF header".to_string();
    let shoff = usize::try_from(u64_at(b, 0x28).ok_or_else(bad)?).map_err(|_| bad())?;
    let shentsize = usize::from(u16_at(b, 0x3A).ok_or_else(bad)?);
    let shnum = usize::from(u16_at(b, 0x3C).ok_or_else(bad)?);
    let shstrndx = usize::from(u16_at(b, 0x3E).ok_or_else(bad)?);
    if shentsize < 0x40 || shstrndx >= shnum {
        return Err(bad());
    }
    let header = |i: usize| -> Option<(u32, u32, u64, u64)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(b, at)?,
            u32_at(b, at + 4)?,
            u64_at(b, at + 0x18)?,
            u64_at(b, at + 0x20)?,
        ))
    };
    let (_, _, str_off, str_size) = header(shstrndx).ok_or_else(bad)?;
    let strtab = usize::try_from(str_off)
        .ok()
        .zip(usize::try_from(str_size).ok())
        .and_then(|(o, s)| b.get(o..o.checked_add(s)?))
        .ok_or_else(bad)?;
    (0..shnum)
        .map(|i| {
            let (name_off, kind, _, size) = header(i).ok_or_else(bad)?;
            let name = strtab
                .get(name_off as usize..)
                .and_then(|s| s.split(|&c| c == 0).next())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .ok_or_else(bad)?;
            let size = if kind == SHT_NOBITS { 0 } else { size };
            Ok(Section { name, size })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_sections_of_this_test_binary() {
        // GIVEN this (unstripped, debug) test binary
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // WHEN its sections are listed
        let s = sections(&bytes).unwrap();
        // THEN code and the symbol table are there, with sizes
        let text = s.iter().find(|s| s.name == ".text").expect(".text");
        assert!(text.size > 1000);
        assert!(s.iter().any(|s| s.name == ".symtab"));
        // and .bss takes no room in the file
        assert!(s.iter().filter(|s| s.name == ".bss").all(|s| s.size == 0));
    }

    #[test]
    fn refuses_what_is_not_elf64() {
        assert!(sections(b"#!/bin/sh\necho hi\n").is_err());
        assert!(sections(b"\x7fELF\x01\x01").is_err());
        // a valid ident followed by nothing
        let mut truncated = b"\x7fELF\x02\x01\x01".to_vec();
        truncated.resize(0x30, 0);
        assert!(sections(&truncated).is_err());
    }
}
