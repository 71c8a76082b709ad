//! A tar's headers, read within a budget and kept for the engine.
//!
//! The tar crate reads what describes the next member — PAX records, GNU
//! long names and links, sparse maps — into memory whole, at whatever
//! size the uploader's header claims: a 60 MB `.tar.gz` of one "long
//! name" of 60 GB of zeros would take the agent down. [`HeaderTap`] sits
//! under the tar reader, knows where each member's data lies, and fails
//! any read past [`HEADER_BYTES_PER_MEMBER`] of headers before one
//! member. It also keeps the header bytes (and the padding after each
//! member's data) so the walk can hand them to the engine: a PAX record
//! or a name is in the object too, and nothing in it goes unread.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

/// Header bytes (blocks, extension records, sparse maps, the padding
/// before them) allowed before one member's data. Real archives use a
/// few KiB: PAX records hold names, times and extended attributes.
pub(crate) const HEADER_BYTES_PER_MEMBER: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// What the tap and its reader share.
#[derive(Default)]
struct State {
    /// Bytes handed to the tar reader so far.
    position: Cell<u64>,
    /// While reading headers: the position reads may not pass.
    limit: Cell<Option<u64>>,
    /// Where the last member's data ended: what follows is kept.
    data_end: Cell<u64>,
    over: Cell<bool>,
    /// The header bytes kept, when keeping.
    kept: Option<RefCell<Vec<u8>>>,
}

/// The reader under a `tar::Archive`.
pub(crate) struct TapReader<R> {
    inner: R,
    state: Rc<State>,
}

/// The walk's handle on a [`TapReader`]: says when the tar reader reads
/// headers and when a member's data.
pub(crate) struct HeaderTap {
    state: Rc<State>,
}

/// A tar reader's input, tapped; `keep` says whether header bytes are
/// kept for [`HeaderTap::take_kept`].
pub(crate) fn tap<R: Read>(inner: R, keep: bool) -> (TapReader<R>, HeaderTap) {
    let state = Rc::new(State {
        kept: keep.then(RefCell::default),
        ..State::default()
    });
    let tap = HeaderTap { state: state.clone() };
    tap.reading_headers();
    (TapReader { inner, state }, tap)
}

impl HeaderTap {
    /// Call before asking the tar reader for its next entry: what it
    /// reads now is the rest of the last member's data (skipped), then
    /// headers, within budget.
    pub(crate) fn reading_headers(&self) {
        let end = self.state.data_end.get();
        // A size no archive can hold leaves no room: fail closed.
        let limit = end
            .checked_next_multiple_of(BLOCK)
            .and_then(|next_block| next_block.checked_add(HEADER_BYTES_PER_MEMBER))
            .unwrap_or(self.state.position.get());
        self.state.limit.set(Some(limit));
    }

    /// Call when the tar reader returned a member whose data takes
    /// `archived_len` bytes of the archive: reads are unbounded until
    /// [`Self::reading_headers`]. Not for [`is_extension`] entries: their
    /// data is header bytes, budgeted and kept.
    pub(crate) fn reading_data(&self, archived_len: u64) {
        let start = self.state.position.get();
        self.state.data_end.set(start.saturating_add(archived_len));
        self.state.limit.set(None);
    }

    /// Whether a read failed for the budget.
    pub(crate) fn over(&self) -> bool {
        self.state.over.get()
    }

    /// Why a read failed for the budget, for the verdict.
    pub(crate) fn over_detail(&self) -> String {
        format!(
            "more than {HEADER_BYTES_PER_MEMBER} bytes of tar headers (PAX records, GNU long names, sparse maps) \
             before one member; the rest was not looked at"
        )
    }

    /// The header bytes kept since the last call.
    pub(crate) fn take_kept(&self) -> Vec<u8> {
        self.state
            .kept
            .as_ref()
            .map(|kept| std::mem::take(&mut *kept.borrow_mut()))
            .unwrap_or_default()
    }

    /// How many header bytes are kept now.
    pub(crate) fn kept_len(&self) -> usize {
        self.state.kept.as_ref().map_or(0, |kept| kept.borrow().len())
    }
}

impl<R> TapReader<R> {
    /// The input, untapped: what follows the archive's end is read as it
    /// lies.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for TapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let state = &self.state;
        let position = state.position.get();
        let room = match state.limit.get() {
            Some(limit) if position >= limit => {
                state.over.set(true);
                return Err(io::Error::other(format!(
                    "more than {HEADER_BYTES_PER_MEMBER} bytes of tar headers before one member"
                )));
            }
            Some(limit) => (limit - position).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..room])?;
        state.position.set(position + n as u64);
        if let (Some(kept), Some(_)) = (&state.kept, state.limit.get()) {
            // Only what lies past the last member's data: a skipped
            // rest of that data is the member's, handed over with it.
            let from = state.data_end.get().saturating_sub(position).min(n as u64) as usize;
            kept.borrow_mut().extend_from_slice(&buf[from..n]);
        }
        Ok(n)
    }
}

/// Whether the tar reader returned an entry that describes others — a PAX
/// global header (`g`), a Solaris extended header (`X`), or a PAX record
/// or GNU long name under a header it does not recognise (old tars
/// extract those as files). Its data is header bytes: not read as a
/// member (asking such an entry for its PAX records would read them
/// whole, past the budget), kept with the headers.
pub(crate) fn is_extension<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    let kind = entry.header().entry_type();
    kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
        || kind.as_byte() == SOLARIS_EXTENDED
}

/// Solaris's extended header, which GNU tar reads as a PAX one (`x`).
const SOLARIS_EXTENDED: u8 = b'X';

/// Keywords that change where the members after them lie or what they are
/// called: a global header setting one makes GNU tar read the archive
/// otherwise than the tar reader here, which does not apply it.
const LAYOUT_KEYWORDS: [&str; 3] = ["path", "size", "linkpath"];

/// For an [`is_extension`] entry (its data read here, within the budget):
/// why other tar readers may see other members than this one, which does
/// not apply it to the entries after it; `None` when they would not (a
/// global header of comments and times, as `git archive` writes).
pub(crate) fn unapplied<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<String> {
    let kind = entry.header().entry_type();
    if !kind.is_pax_global_extensions() {
        return Some(format!(
            "an extended header (type `{}`) under a header this tar reader does not recognise: other tar \
             readers apply it to the next member, this one does not",
            kind.as_byte().escape_ascii()
        ));
    }
    let mut records = Vec::new();
    // Over the budget the read fails, and so does the walk's next one.
    entry.read_to_end(&mut records).ok()?;
    for record in tar::PaxExtensions::new(&records) {
        let Ok(record) = record else {
            return Some("a PAX global header whose records do not parse".into());
        };
        let key = record.key().unwrap_or("(not UTF-8)");
        if LAYOUT_KEYWORDS.contains(&key) || key.starts_with("GNU.sparse") {
            return Some(format!(
                "a PAX global header sets `{key}` for the members after it; GNU tar applies it, this tar \
                 reader does not"
            ));
        }
    }
    None
}

/// The bytes a member's data takes in the archive: its size, or for a
/// sparse file the stored chunks (the size before the sparse map, from a
/// PAX `size` record or the header, read exactly as the tar reader reads
/// them: a disagreement would move the budget's window).
pub(crate) fn archived_len<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
    if !entry.header().entry_type().is_gnu_sparse() {
        return entry.size();
    }
    pax_size(entry).unwrap_or_else(|| entry.header().entry_size().unwrap_or(u64::MAX))
}

/// The tar reader's `pax_extensions_value(.., "size")`: the first `size`
/// record, and none at all past the first broken record or value.
fn pax_size<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<u64> {
    let records = entry.pax_extensions().ok()??;
    for record in records {
        let record = record.ok()?;
        if record.key() != Ok("size") {
            continue;
        }
        return record.value().ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A tar whose first entry is a GNU long name of `len` bytes.
    fn long_name_tar(len: u64, then: &[u8]) -> impl Read {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(len);
        header.set_path("././@LongLink").unwrap();
        header.set_cksum();
        let padding = (BLOCK - len % BLOCK) % BLOCK;
        Cursor::new(header.as_bytes().to_vec())
            .chain(io::repeat(b'a').take(len))
            .chain(io::repeat(0).take(padding))
            .chain(Cursor::new(then.to_vec()))
    }

    /// Each entry's name and data (empty when skipped), and the tap.
    type Entries = (io::Result<Vec<(String, Vec<u8>)>>, HeaderTap);

    /// Each entry's name and, when `read_data`, its data (else the tar
    /// reader skips it).
    fn entries_read<R: Read>(reader: R, keep: bool) -> Entries {
        entries_with(reader, keep, true)
    }

    fn entries_with<R: Read>(reader: R, keep: bool, read_data: bool) -> Entries {
        let (reader, tap) = tap(reader, keep);
        let mut archive = tar::Archive::new(reader);
        let mut found = Vec::new();
        let result = (|| {
            let mut entries = archive.entries()?;
            loop {
                tap.reading_headers();
                let Some(entry) = entries.next() else { break };
                let mut entry = entry?;
                if is_extension(&entry) {
                    continue;
                }
                tap.reading_data(archived_len(&mut entry));
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let mut data = Vec::new();
                if read_data {
                    entry.read_to_end(&mut data)?;
                }
                found.push((name, data));
            }
            Ok(found)
        })();
        (result, tap)
    }

    #[test]
    fn a_long_name_past_the_budget_fails_before_it_is_read_into_memory() {
        // 64 GiB of "name": without the tap the tar crate would try to
        // hold it all.
        let (result, tap) = entries_read(long_name_tar(64 << 30, b""), false);
        assert!(result.is_err());
        assert!(tap.over(), "{:?}", result.err());
    }

    /// A tar whose first entry is a PAX global header holding `data`.
    fn global_header_tar(data: &[u8], then: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XGlobalHeader);
        header.set_size(data.len() as u64);
        header.set_path("pax_global_header").unwrap();
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(then);
        out
    }

    #[test]
    fn a_global_header_is_header_bytes_kept_and_budgeted() {
        let member = crate::samples::tar(&[("a.txt", b"the data")]);
        let payload = b"any bytes at all, not PAX records";
        let (result, tap) = entries_read(Cursor::new(global_header_tar(payload, &member)), true);
        let found = result.unwrap();
        assert_eq!(found.len(), 1, "only the member");
        assert!(tap.take_kept().windows(payload.len()).any(|w| w == payload));
        let big = vec![b'g'; (HEADER_BYTES_PER_MEMBER + 1) as usize];
        let (result, tap) = entries_read(Cursor::new(global_header_tar(&big, &member)), true);
        assert!(result.is_err() && tap.over());
    }

    fn global_header_says(records: &[u8]) -> Option<String> {
        let tar = global_header_tar(records, &crate::samples::tar(&[("a.txt", b"x")]));
        let mut archive = tar::Archive::new(Cursor::new(tar));
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert!(is_extension(&entry));
        unapplied(&mut entry)
    }

    #[test]
    fn a_global_header_that_moves_members_is_named_and_one_of_comments_is_not() {
        assert_eq!(
            global_header_says(b"52 comment=0123456789abcdef0123456789abcdef01234567\n"),
            None
        );
        let size = global_header_says(b"12 size=100\n").expect("named");
        assert!(size.contains("sets `size`"), "{size}");
        let path = global_header_says(b"17 path=evil.exe\n").expect("named");
        assert!(path.contains("sets `path`"), "{path}");
        assert!(global_header_says(b"not records at all").is_some());
    }

    #[test]
    fn a_size_past_any_archive_leaves_no_room_for_headers() {
        let (reader, tap) = tap(io::repeat(0), false);
        let mut reader = reader;
        tap.reading_data(u64::MAX - 10);
        tap.reading_headers();
        assert!(reader.read(&mut [0u8; 512]).is_err() && tap.over());
    }

    #[test]
    fn headers_within_the_budget_are_read_and_kept_without_the_members_data() {
        let member = crate::samples::tar(&[("a.txt", b"the data")]);
        let name_len = 300;
        let (result, tap) = entries_read(long_name_tar(name_len, &member), true);
        let found = result.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, b"the data");
        let kept = tap.take_kept();
        assert!(
            kept.windows(300).any(|w| w == vec![b'a'; 300].as_slice()),
            "the long name is kept"
        );
        assert!(!kept.windows(8).any(|w| w == b"the data"), "member data is not kept");
        // Headers: the long name's block and data, the member's block, its
        // padding and the end block the reader stops at.
        assert_eq!(kept.len(), 512 + 512 + 512 + (512 - 8) + 512);
    }

    #[test]
    fn members_larger_than_the_budget_pass_read_or_skipped() {
        let big = vec![7u8; (HEADER_BYTES_PER_MEMBER * 3) as usize];
        let members: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("{i}.bin"), big.clone())).collect();
        let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let tar = crate::samples::tar(&refs);
        for read_data in [true, false] {
            let (result, tap) = entries_with(Cursor::new(tar.clone()), true, read_data);
            assert_eq!(result.unwrap().len(), 4, "read: {read_data}");
            assert!(!tap.over());
            // Four header blocks and the end block; no member's data.
            assert_eq!(tap.kept_len(), 5 * 512, "read: {read_data}");
        }
    }
}
