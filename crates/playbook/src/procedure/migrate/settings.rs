//! The new release's `sites/default/settings.php`, as `fleet migrate build` writes it.
//!
//! The old site's database connection is never copied: the new settings include the old
//! site's own settings file inside a closure when Drupal boots and take its default
//! connection from there, so its password stays in one file and a changed password needs no
//! second edit. That connection is the Migrate API's legacy source (`$databases[KEY]`); the
//! new site's own database is the same server with another database name (which the
//! installer creates). Everything spliced into the PHP is a PHP single-quoted literal.

use std::fmt::Write as _;

/// What goes into the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewSettings<'a> {
    /// The run writing them (named in the header).
    pub(crate) run: &'a str,
    /// The old site's settings file on the host.
    pub(crate) old_settings: &'a str,
    /// The settings key of the legacy connection.
    pub(crate) legacy_key: &'a str,
    /// The new database.
    pub(crate) database: &'a str,
    /// Host names the site answers to (`trusted_host_patterns`).
    pub(crate) hosts: &'a [String],
}

/// `s` as a PHP single-quoted string literal.
pub(crate) fn php_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `s` as a PCRE pattern matching it exactly, as a PHP literal.
fn exact_pattern(s: &str) -> String {
    let mut p = String::from("^");
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            p.push(c);
        } else {
            p.push('\\');
            p.push(c);
        }
    }
    p.push('$');
    php_str(&p)
}

/// The text in the settings where the build puts the hash salt it draws from the host's own
/// random source (hex, so it can be substituted as it is).
pub(crate) const SALT: &str = "@FLEET_HASH_SALT@";

/// The settings file's text, the hash salt as [`SALT`] (the installer chooses the config
/// sync directory itself, inside the site's files, protected as it protects its own).
pub(crate) fn settings_php(s: &NewSettings<'_>) -> String {
    let key = php_str(s.legacy_key);
    let mut t = String::new();
    let _ = writeln!(t, "<?php");
    let _ = writeln!(
        t,
        "// Written by fleet migrate (run {}). The old site's database connection is read from its\n// own settings file when Drupal boots: no password is copied here.",
        s.run.escape_debug()
    );
    let _ = writeln!(
        t,
        "$databases[{key}]['default'] = (function () {{ $databases = []; include {}; return $databases['default']['default']; }})();",
        php_str(s.old_settings)
    );
    let _ = writeln!(
        t,
        "$databases['default']['default'] = ['database' => {}] + $databases[{key}]['default'];",
        php_str(s.database)
    );
    let _ = writeln!(t, "$settings['hash_salt'] = '{SALT}';");
    let patterns: Vec<String> = s.hosts.iter().map(|h| exact_pattern(h)).collect();
    let _ = writeln!(
        t,
        "$settings['trusted_host_patterns'] = [{}];",
        patterns.join(", ")
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_read_the_old_connection_and_quote_every_value() {
        let hosts = vec![
            "site1.h01.test".to_owned(),
            "preview.site1.h01.test".to_owned(),
        ];
        let t = settings_php(&NewSettings {
            run: "20261202-0601-abcd",
            old_settings: "/srv/www/drupal 7/sites/o'brien\\x/settings.php",
            legacy_key: "migrate",
            database: "drupal_h01_1_d10",
            hosts: &hosts,
        });
        assert!(t.starts_with("<?php\n// Written by fleet migrate (run 20261202-0601-abcd)."));
        assert!(t.contains("$databases['migrate']['default'] = (function () { $databases = []; include '/srv/www/drupal 7/sites/o\\'brien\\\\x/settings.php'; return $databases['default']['default']; })();\n"), "{t}");
        assert!(t.contains("$databases['default']['default'] = ['database' => 'drupal_h01_1_d10'] + $databases['migrate']['default'];\n"), "{t}");
        assert!(t.contains("$settings['trusted_host_patterns'] = ['^site1\\\\.h01\\\\.test$', '^preview\\\\.site1\\\\.h01\\\\.test$'];"), "{t}");
        assert!(!t.contains("'password'"), "no secret is written: {t}");
    }

    #[test]
    fn php_strings_escape_quotes_and_backslashes() {
        // PHP reads `'^a\\.b$'` as the pattern `^a\.b$`.
        assert_eq!(exact_pattern("a.b"), "'^a\\\\.b$'");
        assert_eq!(php_str("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(php_str(""), "''");
    }
}
