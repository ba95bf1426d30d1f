//! State paths: `charge`, `enrich#1/checksum` (parallel branch 1), `fetchAll[2]/fetchOne`
//! (map item 2). A region prefix is a path of parallel/map segments ending in `/` (or empty).

/// Which region below a parallel or map state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    Branch(usize),
    Item(usize),
}

/// One segment of a region prefix: the state's name and the branch or item below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg<'a> {
    pub(crate) name: &'a str,
    pub(crate) sub: Option<Sub>,
}

/// The segments of a path (a bad segment is an `Err` naming it).
pub(crate) fn segments(path: &str) -> impl Iterator<Item = Result<Seg<'_>, &str>> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| {
        if let Some((name, b)) = s.split_once('#') {
            let b = b.parse().map_err(|_| s)?;
            Ok(Seg {
                name,
                sub: Some(Sub::Branch(b)),
            })
        } else if let Some((name, rest)) = s.split_once('[') {
            let i = rest
                .strip_suffix(']')
                .and_then(|i| i.parse().ok())
                .ok_or(s)?;
            Ok(Seg {
                name,
                sub: Some(Sub::Item(i)),
            })
        } else {
            Ok(Seg { name: s, sub: None })
        }
    })
}

/// `("fan#1/", "checksum")` for `fan#1/checksum`; `("", "charge")` for `charge`.
pub(crate) fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The region prefix of branch `b` of the parallel state at `state_path`.
pub(crate) fn branch(state_path: &str, b: usize) -> String {
    format!("{state_path}#{b}/")
}

/// The region prefix of item `i` of the map state at `state_path`.
pub(crate) fn item(state_path: &str, i: usize) -> String {
    format!("{state_path}[{i}]/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split() {
        assert_eq!(split_last("fan#1/each[2]/x"), ("fan#1/each[2]/", "x"));
        assert_eq!(split_last("x"), ("", "x"));
        let segs: Vec<_> = segments("fan#1/each[2]/")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            segs,
            [
                Seg {
                    name: "fan",
                    sub: Some(Sub::Branch(1))
                },
                Seg {
                    name: "each",
                    sub: Some(Sub::Item(2))
                }
            ]
        );
        assert!(segments("fan#x/").any(|s| s.is_err()));
        assert_eq!(branch("a", 1), "a#1/");
        assert_eq!(item("a#1/b", 2), "a#1/b[2]/");
    }
}
