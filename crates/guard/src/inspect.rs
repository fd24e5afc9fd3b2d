//! Request inspection: is there an attack in this value?
//!
//! Every value a request carries (path segments, query and form fields,
//! selected headers, cookies, JSON strings and keys, multipart text parts)
//! is looked at as it came and as it decodes: URL-, HTML-entity-,
//! `\u`/`%u`- and base64-decoded where it looks encoded, a bounded number
//! of layers deep. Two tokenisers from libinjection (SQL and HTML, through
//! the `libinjectionrs` port) and a table of rules of our own score what
//! they find; a request's score is the sum over its findings, and it is an
//! attack at [`Inspector::THRESHOLD`]. Findings name the rule and the
//! part, never the value: values can be passwords.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;

/// Where in the request a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Path,
    Query,
    Header,
    UserAgent,
    Cookie,
    Body,
    /// A file name: an upload header's value or a multipart `filename=`.
    Filename,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Path => "path",
            Part::Query => "query",
            Part::Header => "header",
            Part::UserAgent => "user_agent",
            Part::Cookie => "cookie",
            Part::Body => "body",
            Part::Filename => "filename",
        }
    }
}

/// The kind of attack a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Sqli,
    Xss,
    Traversal,
    Command,
    Ssrf,
    Template,
    Log4Shell,
    Xxe,
    Crlf,
    /// Requests shaped so that what is inspected is not what the
    /// application reads: a multipart charset, transfer encoding or
    /// ambiguous parameter, a pile of byte ranges (CRS's 920 and 922).
    Protocol,
    Nosql,
    Ldap,
    Scanner,
    Probe,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Sqli => "sqli",
            Category::Xss => "xss",
            Category::Traversal => "traversal",
            Category::Command => "command",
            Category::Ssrf => "ssrf",
            Category::Template => "template",
            Category::Log4Shell => "log4shell",
            Category::Xxe => "xxe",
            Category::Crlf => "crlf",
            Category::Protocol => "protocol",
            Category::Nosql => "nosql",
            Category::Ldap => "ldap",
            Category::Scanner => "scanner",
            Category::Probe => "probe",
        }
    }
}

/// One rule that fired, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub category: Category,
    pub part: Part,
    pub score: u32,
}

/// What inspection concluded about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub score: u32,
    pub findings: Vec<Finding>,
}

impl Verdict {
    pub fn is_attack(&self) -> bool {
        self.score >= Inspector::THRESHOLD
    }

    /// The rules that fired, deduplicated, for an event: `sqli.libinjection@query`.
    pub fn rules(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .findings
            .iter()
            .map(|f| format!("{}@{}", f.rule, f.part.as_str()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn add(&mut self, rule: &'static str, category: Category, part: Part, score: u32) {
        // One rule counts once per part, however many values it fires on.
        if self
            .findings
            .iter()
            .any(|f| f.rule == rule && f.part == part)
        {
            return;
        }
        self.score += score;
        self.findings.push(Finding {
            rule,
            category,
            part,
            score,
        });
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "score {} ({})", self.score, self.rules().join(", "))
    }
}

/// Which parts a rule applies to.
#[derive(Clone, Copy)]
enum Scope {
    /// Every part.
    Any,
    /// Values (path segments included), not the whole path (a `..` there
    /// is normalised by the router) nor a User-Agent.
    Values,
    Path,
    UserAgent,
    /// Values that are, or are named like, URLs.
    UrlLike,
    /// File names.
    Filename,
}

struct Rule {
    name: &'static str,
    category: Category,
    score: u32,
    scope: Scope,
    pattern: &'static str,
}

const CRITICAL: u32 = 5;
const ERROR: u32 = 4;
const WARNING: u32 = 3;

/// Our own rules, matched against the lower-cased, decoded value. Each is
/// written for the syntax an attack needs, not for words: "union was a
/// great select" and "bash away in the gym" are not attacks.
const RULES: &[Rule] = &[
    // SQL injection beyond what the tokeniser sees.
    Rule {
        name: "sqli.union_select",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\bunion(?:\s+|/\*.*?\*/|\()+(?:all\s+|distinct\s+)?\(*\s*select\b",
    },
    Rule {
        name: "sqli.time_delay",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\b(?:sleep|pg_sleep|benchmark|randomblob)\s*\(\s*[\d(]|\bwaitfor\s+(?:delay|time)\s+'|dbms_pipe\.receive_message|dbms_lock\.sleep",
    },
    Rule {
        name: "sqli.catalog",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\b(?:information_schema|pg_catalog|sqlite_master|sysobjects|syscolumns|mysql\.user|all_tables|xp_cmdshell|sp_executesql|sp_oacreate)\b",
    },
    Rule {
        name: "sqli.stacked",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"['\x22\d)]\s*;\s*(?:drop|alter|truncate|insert|update|delete|exec|execute|declare|create|shutdown|grant)\s",
    },
    Rule {
        name: "sqli.tautology",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r#"['")]\s*(?:or|and|\|\||&&)\s*\(?\s*['"]?(\w+)['"]?\s*(?:=|<>|!=|like)\s*['"]?\w+|['"]\s*(?:or|and)\s+\d+\s*(?:=|<|>)|\bor\s+\d+\s*=\s*\d+\s*(?:--|#|/\*)"#,
    },
    // A value that begins by continuing a condition: a connective, an
    // operand and a comparison (`' AND 6698=(`, `or 1='`, `|| c == '`).
    // Text does not open with "or x ="; an injected suffix does.
    Rule {
        name: "sqli.condition_suffix",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r#"^[\s'"`)]*(?:(?:and|or|xor)\b|&&|\|\|)\s*\(*\s*[\w@.$'"`]+\s*(?:==?|[<>!]=|<>|<=>|\b(?:like|rlike|regexp|glob)\b)\s*(?:['"`(\d@-]|$)|^[\s'"`)]*(?:(?:and|or|xor)\b|&&|\|\|)\s*\(*\s*[\w@.$'"`]+\s+is\s+(?:not\s+)?null\b"#,
    },
    // A subquery where a value belongs (`in (select`, `= (select`,
    // `exists(select`).
    Rule {
        name: "sqli.subquery",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"(?:\b(?:in|exists|any|all|some)|[=<>,])\s*\(\s*select\b",
    },
    // The end of a select list: `count(*) AS n FROM`, or a value that
    // starts there (`) AS alias FROM`).
    Rule {
        name: "sqli.select_list",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r#"(?:^\s*|\w\([^()]{0,100})\)\s*as\s+['"`]?\w+['"`]?\s+from\b"#,
    },
    // An inline comment used as the space beside a keyword
    // (`SELECT/**/password/**/FROM`): only evasion writes SQL so.
    Rule {
        name: "sqli.comment_space",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\b(?:select|union|from|where|insert|into|update|delete|drop|table|values|declare|exec|execute|replace|truncate|alter|and|or|having|order|group|limit)/\*[^*]{0,40}\*/(?:[\w@.]+/\*[^*]{0,40}\*/)?(?:select|union|from|where|table|values|and|or|having|limit|null|all|distinct|into|set|by)\b",
    },
    Rule {
        name: "sqli.functions",
        category: Category::Sqli,
        score: WARNING,
        scope: Scope::Values,
        pattern: r"\b(?:extractvalue|updatexml|load_file|char|concat|group_concat|substring|ascii|hex|unhex|cast|convert|version|database|user|json_extract)\s*\([^)]*\)\s*(?:=|,|\)|--|#|from\b)",
    },
    Rule {
        name: "sqli.comment_terminator",
        category: Category::Sqli,
        score: WARNING,
        scope: Scope::Values,
        pattern: r"['\x22]\s*(?:--[ \t-]*|#[^\n]{0,20})$|['\x22]\s*/\*|\*/\s*(?:and|or|union|select)\b",
    },
    Rule {
        name: "nosqli.operator",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\[\s*\$(?:ne|gt|gte|lt|lte|regex|where|exists|nin|in|or|and|expr)\s*\]|\x22\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|exists|regex|expr|function|accumulator|or|and|not|nor|elemmatch|type|size|all|mod|text|jsonschema|lookup|merge|out)\x22\s*:|\bdb\.\w+\.(?:find|insert|drop)\w*\s*\(|this\.\w+\s*==",
    },
    Rule {
        name: "ldap.injection",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\*\)\s*!?\(\s*[|&!]?|\)\s*\(\s*\|\s*\(|\(\s*[|&]\s*\(\s*\w+\s*=\s*\*|^\*\)\(|\(objectclass=\*\)|\)\s*[&|]?\s*\(\s*!?\s*\w+\s*[<>~]?=|\)\s*!\s*\(",
    },
    // Cross-site scripting beyond what the tokeniser sees.
    Rule {
        name: "xss.script_tag",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"<\s*/?\s*[a-z][\w-]*:(?:script|iframe|object|embed|frame|frameset|applet|meta|base|svg|isindex)\b|<\s*/?\s*(?:script|iframe|frame|frameset|object|embed|applet|meta|base|link|style|svg|math|xss|template|isindex|portal)\b",
    },
    Rule {
        name: "xss.event_handler",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"<[^>]*[\s/\x22'](?:on[a-z]{3,30})\s*=|\bon(?:error|load|mouseover|focus|click|toggle|animationstart|begin|pageshow|start|finish)\s*=\s*[\x22'`]?\s*[\w$]+\s*[(=`]",
    },
    // Script written in six characters (JSFuck): no text is only
    // brackets, parentheses, `!` and `+`.
    Rule {
        name: "xss.bracket_script",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:[\[()!+\]]{0,12}\[\]){4,}",
    },
    // A function called as a tagged template (`[].sort.call`${alert}``),
    // by optional chaining (`alert?.(1)`), or `eval` of decoded text,
    // and script in CSS (`url(javascript:`, `-moz-binding`, `expression(`).
    Rule {
        name: "xss.indirect_call",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\.\s*(?:call|apply|bind)\s*`|\b(?:alert|confirm|prompt|eval|settimeout|setinterval|function)\s*\?\.\s*\(|\beval\s*\(\s*(?:atob|unescape|decodeuricomponent|string\.fromcharcode|window|this|top|self|location|document|name)\b|`\s*\$\{\s*(?:alert|eval|confirm|prompt|function|settimeout|setinterval|navigation|location|document|window|top|self|parent|frames)\b",
    },
    Rule {
        name: "xss.css_script",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"-moz-binding\s*:|\burl\s*\(\s*['\x22]?\s*(?:javascript|vbscript|livescript)\b|[:=]\s*expression\s*\(|\bbehavior\s*:\s*url\s*\(",
    },
    Rule {
        name: "xss.javascript_uri",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:javascript|vbscript|livescript)\s*:[^\s]|data\s*:\s*text/html|data\s*:[^,]*;base64",
    },
    Rule {
        name: "xss.dom_sink",
        category: Category::Xss,
        score: WARNING,
        scope: Scope::Any,
        pattern: r"\b(?:alert|prompt|confirm|eval|settimeout|setinterval|fromcharcode|atob)\s*(?:\(|`)|document\s*\.\s*(?:cookie|domain|write|location)|window\s*\.\s*location|\.innerhtml\s*=",
    },
    Rule {
        name: "xss.tag_with_attribute",
        category: Category::Xss,
        score: WARNING,
        scope: Scope::Any,
        pattern: r"<\s*(?:img|a|body|input|video|audio|source|details|marquee|div|form|button|select|textarea|keygen|image)\b[^>]*\b(?:src|href|action|formaction|srcdoc|style|background)\s*=",
    },
    Rule {
        name: "ssi.directive",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"<!--\s*#\s*(?:exec|include|echo|config|set|printenv|fsize|flastmod)\b",
    },
    // Path traversal and local file inclusion.
    Rule {
        name: "traversal.dot_dot",
        category: Category::Traversal,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:^|[\\/=:])\.{2,}[\\/]|[\\/]\.{2,}(?:[\\/]|$)|\.\.;/",
    },
    Rule {
        name: "traversal.system_file",
        category: Category::Traversal,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:^|[\\/])(?:etc[\\/](?:passwd|shadow|group|gshadow|hosts|hostname|issue|crontab|cron\.d|sudoers|subuid|subgid|ssh|mysql|nginx|apache2|httpd|php\d?|resolv\.conf|fstab|profile|motd|environment|security|ld\.so)|proc[\\/](?:self|\d+|net|version|cpuinfo|meminfo|mounts|sched_debug)(?:[\\/]|$)|windows[\\/](?:win\.ini|system32|system\.ini)|boot\.ini|ntuser\.dat\b|winnt[\\/]|\.ssh[\\/]|\.(?:bash_history|bashrc|zsh_history|mysql_history|psql_history|netrc|pgpass|git-credentials)\b|\.aws[\\/]credentials|\.kube[\\/]config|\.docker[\\/]config|root[\\/]\.|var[\\/]log[\\/]|var[\\/]run[\\/]secrets)|\bc:[\\/]+(?:windows|inetpub|boot\.ini)\b",
    },
    Rule {
        name: "traversal.wrapper",
        category: Category::Traversal,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b(?:file|php|phar|zip|expect|glob|data|jar|netdoc|compress\.zlib)://",
    },
    Rule {
        // A UNC path as the whole value (`\\host\share\…`): a file read
        // that reaches another machine (and hands it Windows credentials).
        name: "traversal.unc_path",
        category: Category::Traversal,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"^\s*\\\\(?:[a-z0-9][\w.-]*|\[?[0-9a-f:.]*:[0-9a-f:.]*\]?)\\[\w.$-]+(?:\\|$)",
    },
    Rule {
        name: "traversal.null_byte",
        category: Category::Traversal,
        score: ERROR,
        scope: Scope::Any,
        pattern: r"\x00",
    },
    // OS command injection: a separator, then something a shell runs.
    Rule {
        name: "command.chained",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:[;|`\n]|&&|\|\||\$\(|\$\{ifs\})\s*(?:/(?:usr/)?s?bin/)?(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|ksh|python[23]?|perl|ruby|php|ping|nslookup|powershell|pwsh|cmd(?:\.exe)?|chmod|chown|ifconfig|ipconfig|telnet|nmap|printenv|sudo|crontab|tftp|busybox|xterm|base64|awk|sed|uptime|netstat|ps)(?:\s|$|[;|&<>`)'\x22])|(?:[;|`\n]|&&|\|\||\$\()\s*(?:echo|rm|more|less|head|tail|find|type|dir|net|env|kill|timeout|sleep|reboot|shutdown|su|dig|id|cat|ls|ps)\s+(?:-{1,2}[a-z]|[/~$%]|['\x22]/|\w+\s*[|>])|(?:[;|`\n]|&&|\|\||\$\()\s*/(?:usr/)?s?bin/\w+",
    },
    Rule {
        // A value that starts by ending a command (`;`, `|`, `&&`, `$(`)
        // and goes on as a command line: a word, then an option, a path,
        // a dotted host name or arithmetic. Whatever the program is
        // called, not a list of names.
        name: "command.leading_separator",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        // (A single `|` only glued to the word, or before a Windows
        // switch: a markdown table row starts `| cell |`.)
        pattern: r"^\s*\|\s+[a-z][a-z0-9_.-]{1,24}\s+/[a-z](?:\s|$)|^\s*(?:(?:;{1,2}|&{1,2}|\|\||\$\(|`)\s*|\|)[a-z][a-z0-9_.-]{1,24}(?:\s+|\++|\$\{?ifs\}?(?:\$\d)?)(?:-{1,2}[a-z]|/[a-z]|~/|[a-z0-9-]+(?:\.[a-z0-9-]+)+\.[a-z][a-z0-9-]*|\d+\s*[*+/%]\s*\d+|[a-z]+(?:\s+|\++)[a-z0-9-]+(?:\.[a-z0-9-]+)+\.[a-z][a-z0-9-]*)",
    },
    Rule {
        name: "command.substitution",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\$\(\s*[a-z/][^)]*\)|(?:^|[;|&=<>'\x22]\s*|\w)`\s*[a-z/][\w./~-]*(?:[ \t]+[\w./~=$|&<>'\x22:-]+){0,8}[ \t]*`|\$\{ifs\}|\$ifs\b|;\s*\w+\s*\$\{|\b(?:system|exec|passthru|shell_exec|popen|proc_open|eval|assert|runtime\.getruntime\(\)\.exec)\s*\(\s*['\x22$]",
    },
    Rule {
        // Shellshock (CVE-2014-6271 and kin): a value that bash imports as
        // a function definition, which is only ever one starting `() {`,
        // or the exploits' empty bodies (`{ :; }`, `{ _; }`) anywhere.
        name: "command.shellshock",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"^\s*\(\s*\)\s*\{|\(\s*\)\s*\{\s*[:_]\s*;?\s*\}",
    },
    Rule {
        name: "command.reverse_shell",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"/dev/(?:tcp|udp)/|\bnc\s+-[elvnp]+\b|\bbash\s+-i\b|\bmkfifo\b|\bsocat\b\s|\bpowershell(?:\.exe)?\s+-(?:e|enc|encodedcommand|nop|w)\b|\bcmd(?:\.exe)?\s+/[ck]\b",
    },
    // Server-side request forgery: URL-like values pointing inside.
    Rule {
        name: "ssrf.internal_target",
        category: Category::Ssrf,
        score: CRITICAL,
        scope: Scope::UrlLike,
        pattern: r"^(?:[a-z][a-z0-9+.-]*:)?//(?:[^/@]*@)?(?:localhost|127\.\d+\.\d+\.\d+|0(?:\.0){0,3}|0x[0-9a-f]+|\d{8,10}|0[0-7]+(?:\.[0-7]+){0,3}|10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+|172\.(?:1[6-9]|2\d|3[01])\.\d+\.\d+|169\.254\.\d+\.\d+|100\.(?:6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+|\[[0-9a-f:.]*\]|metadata(?:\.google\.internal)?|[\w.-]+\.(?:internal|local|localdomain|localhost))(?:[:/?#]|$)",
    },
    Rule {
        name: "ssrf.scheme",
        category: Category::Ssrf,
        score: CRITICAL,
        scope: Scope::UrlLike,
        pattern: r"^(?:gopher|dict|ldap|ldaps|tftp|sftp|jar|netdoc|file)://",
    },
    Rule {
        name: "ssrf.metadata",
        category: Category::Ssrf,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"169\.254\.169\.254|\bmetadata\.google\.internal\b|\b100\.100\.100\.200\b|/latest/meta-data\b|/computemetadata/v1\b|fd00:ec2::254",
    },
    // Server-side template injection.
    Rule {
        name: "template.expression",
        category: Category::Template,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\{\{[^}]*(?:[*+/%|~()\[\]]|__|\bconfig\b|\bself\b|\brequest\b|\bcycler\b|\blipsum\b|\bjoiner\b|\bnamespace\b|\bconstructor\b)[^}]*\}\}|\{%[^%]*(?:import|include|for|set|if|exec|eval|print|debug)\b[^%]*%\}|<%=?[^%]*%>|\$\{[^}]*(?:[*+/%()]|\.\w+\()[^}]*\}|#\{[^}]*[*+()][^}]*\}|\*\{[^}]*\}|@\([^)]*\)|\[#assign|<#assign|\$\{\{|\bnew\s*\(\s*\)\s*\.\s*getclass",
    },
    Rule {
        name: "template.python_internals",
        category: Category::Template,
        score: CRITICAL,
        scope: Scope::Any,
        // The names a sandbox escape walks, in use: the ones only such
        // code says anywhere, the common ones (`__init__`, `__class__`)
        // only as an attribute or a subscript, not named in prose.
        pattern: r"__(?:mro|subclasses|globals|builtins|import|getattribute)__|(?:\.\s*|\[\s*['\x22])__(?:class|init|base|bases|dict)__",
    },
    // Log4Shell and other lookups (checked after the lookups are undone).
    Rule {
        name: "log4shell.jndi",
        category: Category::Log4Shell,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\$\{\s*jndi\s*:|jndi\s*:\s*(?:ldaps?|rmi|dns|iiop|corba|nds|nis|http)s?\s*:",
    },
    Rule {
        name: "log4shell.lookup",
        category: Category::Log4Shell,
        score: ERROR,
        scope: Scope::Any,
        pattern: r"\$\{\s*(?:env|sys|java|ctx|main|bundle|docker|k8s|log4j|spring|lower|upper|date|base64|::-)\s*:",
    },
    // XML external entities.
    Rule {
        name: "xxe.entity",
        category: Category::Xxe,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"<!\s*(?:doctype|entity)\b[^>]*(?:\bsystem\b|\bpublic\b|\[|%)|<\s*xi:include\b|\bxmlns:xi\s*=",
    },
    // Schemas named for fetching (`schemaLocation`, `xs:include`): routine
    // in GPX, sitemaps and WSDL, dangerous only to a validating parser, so
    // a hint that needs another finding to block.
    Rule {
        name: "xxe.remote_schema",
        category: Category::Xxe,
        score: WARNING,
        scope: Scope::Any,
        pattern: r"\b(?:no_?namespace)?schemalocation\s*=\s*['\x22]?\s*(?:https?|ftp|file|jar|netdoc)\s*:|<\s*[\w-]+:(?:include|import|redefine)\b[^>]*\b(?:namespace|schemalocation|href)\s*=",
    },
    // CRLF and header injection.
    Rule {
        name: "crlf.header_injection",
        category: Category::Crlf,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"[\r\n]\s*(?:set-cookie|location|content-(?:type|length)|refresh|x-[a-z-]+|access-control-[a-z-]+|http/\d)\s*:?",
    },
    // SQL: calls of functions only an attack makes, PostgreSQL casts of a
    // quoted value, and a quote followed by an operator keyword.
    Rule {
        name: "sqli.dangerous_function",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\b(?:benchmark|sleep|pg_sleep|load_file|extractvalue|updatexml|utl_inaddr|utl_http|dbms_\w+|xp_\w+|sys_eval|sys_exec|lo_import|lo_export|lo_get|pg_read_file|pg_ls_dir|sqlite_version|randomblob|make_set|elt|geometrycollection|multipoint|polygon|exp\s*\(\s*~)\s*\(|\binto\s+(?:out|dump)file\b",
    },
    Rule {
        name: "sqli.cast_of_quote",
        category: Category::Sqli,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"['\x22]\s*::\s*(?:text|int\d?|integer|bool(?:ean)?|jsonb?|varchar|char|regclass|oid|numeric|bytea)\b",
    },
    Rule {
        name: "sqli.quote_operator",
        category: Category::Sqli,
        score: ERROR,
        scope: Scope::Values,
        pattern: r"['\x22`]\s*(?:not\s+)?(?:collate|glob|regexp|rlike|notnull|isnull|is\s+(?:not\s+)?(?:null|true|false|unknown)|between|sounds\s+like|xor|div|mod)\b",
    },
    // Java, .NET and PHP object injection; expression languages.
    Rule {
        name: "sqli.function_name",
        category: Category::Sqli,
        score: WARNING,
        scope: Scope::Values,
        pattern: r"\b(?:ascii|char|chr|concat(?:_ws)?|group_concat|mid|substr(?:ing)?|length|md5|sha1|ord|hex|unhex|database|version|current_user|system_user|session_user|schema|count|cast|convert|ifnull|nullif|coalesce|instr|locate|position|left|right|reverse|lower|upper|json_\w+|row_to_json|array_agg|string_agg|xmltype|to_char)\s*\(",
    },
    Rule {
        name: "sqli.statement",
        category: Category::Sqli,
        score: ERROR,
        scope: Scope::Values,
        pattern: r"\b(?:create|alter|drop|truncate|rename)\s+(?:table|database|schema|user|view|procedure|function|index|trigger)\b|\bexec(?:ute)?\s+(?:master\.|xp_|sp_|immediate\b)|\bhaving\s+\d+\s*[=<>]|\bselect\b[^\n]{0,80}\bfrom\b[^\n]{0,80}\bwhere\b|\binsert\s+into\b[^\n]{0,80}\bvalues\b|\bdelete\s+from\b|\bupdate\s+\w+\s+set\b|\border\s+by\s+\d+\s*(?:--|#|/\*)",
    },
    Rule {
        // A quote closed, then a condition on a column or a function call
        // (`x' or email~all(…)`, `1"and json_search(…)`): SQL syntax after
        // a string, not an English "and".
        name: "sqli.quote_condition",
        category: Category::Sqli,
        // Code in a note says `"open" and count > 0` too: it takes a
        // second finding to block.
        score: ERROR,
        scope: Scope::Values,
        pattern: r"(?:\\?['\x22`])\s*(?:and|or|xor|&&|\|\|)\s+\(?\s*(?:[a-z_][\w.$]*\s*\)?\s*(?:=|<>|!=|<=|>=|<|>|~|\blike\b|\brlike\b|\bregexp\b|\bbetween\b|\bis\s+(?:not\s+)?null\b|\bin\s*\()|[a-z_][\w.$]*\()",
    },
    Rule {
        name: "sqli.quote_logic",
        category: Category::Sqli,
        score: ERROR,
        scope: Scope::Values,
        pattern: r"(?:\\?['\x22`])\s*(?:and|or|xor|&&|\|\|)\s*(?:['\x22`\d(]|not\b|true\b|false\b|null\b)",
    },
    Rule {
        name: "crlf.request_in_value",
        category: Category::Crlf,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\b(?:get|post|put|delete|head|options|connect|trace|patch)\s+(?:/|https?://)\S*\s+http/\d",
    },
    Rule {
        name: "php.variable_call",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\$\$?\{?[@$]?[a-z_]\w*(?:->\w+)?\}?\s*\(\s*[\w'\x22$]*\s*\)|\$\{\s*[@$][^}]{0,40}\}\s*\(|\$+[a-z_]\w*(?:\s*(?:\[(?:[^\[\]\n]|\[[^\[\]\n]*\]){1,40}\]|\{[^}\n]{1,40}\}|/\*[^*\n]{0,40}\*/|#[^\n]{0,40}\n|//[^\n]{0,40}\n))+\s*\(|\[\s*['\x22]?[a-z_]\w*['\x22]?\s*\]\s*\[\s*\d+\s*\]\s*\(",
    },
    Rule {
        name: "java.class_reference",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b(?:java\.(?:lang|io|net|nio|util|beans|rmi|security)\.[a-z]|javax\.(?:script|naming|management|xml)\.|com\.sun\.|sun\.misc\.|org\.apache\.(?:commons|xalan|xbean|tomcat|catalina|struts|velocity)|org\.springframework\.|com\.opensymphony\.|org\.omg\.|org\.codehaus\.groovy|org\.mozilla\.javascript|bsh\.interpreter|(?:invoker|instantiate|clone|constant|chained|map)transformer|(?:prototype(?:clone|serialization)|instantiate)factory|(?:while|for)closure|processbuilder|getruntime\s*\(|classloader|ognlcontext|#_memberaccess|@java\.|system\.diagnostics\.process|system\.runtime\.serialization)",
    },
    Rule {
        name: "java.serialized_object",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\bro0ab|\xac\xed\x00\x05|\baced0005|\bh4siaaaaaaaa",
    },
    Rule {
        name: "php.code",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"<\?\s*(?:php\b|=)|<\?\s|\{php\}|\$_(?:get|post|cookie|request|server|files|env|session|globals)\b|\b(?:base64_decode|shell_exec|passthru|proc_open|popen|fsockopen|pfsockopen|create_function|call_user_func(?:_array)?|gzinflate|gzuncompress|str_rot13|file_get_contents|file_put_contents|fwrite|unserialize|phpinfo|preg_replace|assert|highlight_file|show_source|php_uname|getenv|ini_set|set_time_limit|posix_\w+|pcntl_\w+|array_map|array_filter|usort|get_defined_vars|get_defined_functions|bzdecompress|gethostbyname|register_shutdown_function|parse_str|putenv|symlink|readfile|scandir|opendir|move_uploaded_file|mb_ereg_replace|escapeshellcmd|escapeshellarg)\s*\(|\b[oca]:\d+:[\x22{]|php://|\bzlib\.inflate\b",
    },
    Rule {
        name: "php.script_filename",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Filename,
        pattern: r"\.\s*(?:php\d?|phtml|pht|phar|phps|jsp|jspx|jsw|jsv|asp|aspx|asmx|ashx|cer|asa|cgi|pl|py|rb|sh|bash|exe|dll|bat|cmd|com|scr|vbs|ps1|htaccess|shtml?)(?:[.\s;:/\x00]|$)",
    },
    Rule {
        name: "js.injection",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\bwhile\s*\(\s*[!+~-]*\s*(?:0|1|true|undefined|\[\]|\{\})\s*\)|\bprocess\.(?:mainmodule|binding|env|kill|exit)\b|\bchild_process\b|\brequire\s*\(\s*['\x22`]|\bmodule\.exports\s*=|\bconstructor\s*\(\s*['\x22`]|\bfunction\s*\(\s*\)\s*\{|=>\s*\{[^}]*\bprocess\b|\bglobal\.process\b|\bthis\.constructor\b|\bnew\s+function\b|\bimport\s*\(\s*['\x22`]",
    },
    Rule {
        name: "js.prototype_pollution",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"__proto__|\bconstructor\s*(?:\.|\[\s*['\x22]?)\s*prototype\b|\bprototype\s*\[\s*['\x22]?\w+['\x22]?\s*\]\s*=",
    },
    Rule {
        name: "perl.interpolation",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"@\{\s*\[|\bcore::\w+\s*\(|\bqx\s*[({/]|\bsystem\s*\(\s*qq",
    },
    Rule {
        name: "command.powershell",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b(?:invoke-expression|invoke-webrequest|invoke-restmethod|invoke-command|start-process|new-object\s+(?:system\.)?net\.webclient|downloadstring|downloadfile|set-executionpolicy|get-wmiobject|get-childitem|remove-item|iex\s*\(|\[system\.convert\]::frombase64string)",
    },
    Rule {
        name: "command.windows_batch",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"\bfor\s+(?:/[a-z]\s+(?:\x22[^\x22]*\x22\s+|[a-z]:\\\S*\s+)?)?%%?\S\s+in\s*\(|\bif\s+(?:/i\s+)?(?:not\s+)?(?:exist|errorlevel|cmdextversion|defined)\b|\bif\s+/i\s|\bif\s+(?:not\s+)?(?:\x22[^\x22]*%[^\x22]*\x22|%\S+%)\s*==|\bif\s+(?:not\s+)?(?:\x22[^\x22]*\x22|\S+)\s*==\s*\S+\s+(?:@?echo|goto|call|set|cmd|exit|start|del|copy|move|type|dir|rem|pause|\()|\bif\s+(?:not\s+)?(?:\x22[^\x22]*\x22|\(?\S+)\s+(?:equ|neq|lss|leq|gtr|geq)\s|\bgoto\s+:\w+|(?:^|[\r\n&|])\s*goto\s+\w+\s*(?:$|[\r\n&|])|\b(?:cmd|command)(?:\.exe)?\s+/[ck]\b|%(?:comspec|systemroot|windir|temp|userprofile|programfiles)%|\bcertutil\b|\bbitsadmin\b|\bregsvr32\b|\bwmic\b|\bmshta\b|\brundll32\b",
    },
    Rule {
        name: "command.glob_path",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"(?:^|[\s;|&`'\x22(=])/[\w.\[\]?*-]*[?*\[][\w.\[\]?*-]*/[\w.\[\]?*-]+|(?:^|[\s;|&`'\x22(=])/(?:bin|sbin|usr|etc|tmp|dev|proc|var)/[\w.-]*[?*][\w.?*-]*",
    },
    Rule {
        name: "command.glob_file",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"(?:^|[\s;|&`'\x22(=])/[\w.-]+/[\w.-]*(?:\[[^\]/\s]+\]|\*)[\w.\[\]*!-]*",
    },
    // A value that is a command line. Programs whose names are also
    // everyday words or names (Ruby, Dash, node, host, ping) count only
    // with an option, a path, a host or file name, or a chained command:
    // "Ruby Chen" is a person, "ruby -e …" is not.
    Rule {
        name: "command.leading_command",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"^\s*(?:sudo\s+|nohup\s+|strace\s+|time\s+|env\s+|exec\s+)*(?:(?:ifconfig|ipconfig|whoami|uname|wget|curl|ncat|netcat|nmap|telnet|ssh|scp|rsync|chmod|chown|chgrp|sudo|passwd|useradd|adduser|usermod|userdel|visudo|crontab|nohup|strace|ltrace|gdb|python[23]?(?:\.\d+)?|php|npm|npx|pip3?|bash|zsh|ksh|tcsh|busybox|ansible(?:-[a-z]+)?|chef-[a-z]+|kubectl|docker|podman|systemctl|journalctl|iptables|nft|mkfifo|xxd|openssl|powershell|pwsh|cscli|killall|pkill|tcpdump|socat|base64|certutil|netstat|lsof|dmesg|mknod|insmod|modprobe|setfacl|getfacl|nslookup|traceroute)(?:\s+(?:-{1,2}[a-z]|[/~.]|[a-z][\w.-]*\s*$|(?:ifconfig|whoami|uname|id|who|ls|cat|ps|pwd|env|sh|bash|all|install|list|dump|decrypt|plugin|collection|config|version)\b)|\s*$)|(?:perl|ruby|gem|node|host|dash|dig|ping|perf|ss|knife|puppet)\s+(?:-{1,2}[a-z]|[/~.]|[a-z][\w-]*[./:@][\w./:@-]+\s*$|(?:ifconfig|whoami|uname|id|who|ls|cat|ps|pwd|env|sh|bash)\b))",
    },
    Rule {
        name: "command.shell_escape",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Values,
        pattern: r"(?:^|[\s;|&])(?:vi|vim|ex|gdb|less|more|man|ftp|awk|find|nmap|perl|python\d?|ruby|lua|tar|zip|git|env|flock|nohup|nice|timeout|xargs|strace|busybox)\s+[^\n]*(?:(?:^|[\s:'\x22\\])!\s*/?(?:(?:usr/)?bin/)?(?:sh|bash|zsh|dash|ksh|csh|tcsh|cmd|python\d?|perl|ruby)\b|-exec\b|--interactive|-c\s*['\x22]?(?:import|system|exec|os\.|:!))",
    },
    Rule {
        name: "xss.utf7",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\+ad[w4]-",
    },
    Rule {
        name: "xss.global_bracket_access",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b(?:document|window|self|top|parent|frames|globalthis|location)\s*\)?\s*\[\s*['\x22`]|\[\s*['\x22]constructor['\x22]\s*\]",
    },
    Rule {
        name: "rfi.userinfo_host",
        category: Category::Ssrf,
        score: CRITICAL,
        scope: Scope::UrlLike,
        pattern: r"^[a-z][a-z0-9+.-]*://[^/?#\s]*@",
    },
    // Scanners and probes.
    // Query languages the API does not speak, spoken to it anyway.
    Rule {
        // MongoDB's operators as a key or in a JSON-ish fragment (`$ne`,
        // `{"$where": …}`, `', $or: [`): Rampart's API has none.
        name: "nosql.operator",
        category: Category::Nosql,
        score: CRITICAL,
        scope: Scope::Any,
        // (In an object or after a quote: SCSS's `$size: 14px` and PHP's
        // `$a ? $b : 0` are not.)
        pattern: r"(?:[{,\[]\s*['\x22]?|['\x22])\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|or|and|not|nor|regex|exists|elemmatch|expr|mod|all|size|text|function|accumulator|lookup|jsonschema)\b\s*['\x22]?\s*:|^\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|or|and|not|nor|regex|exists|elemmatch|expr)$",
    },
    Rule {
        name: "nosql.shell_call",
        category: Category::Nosql,
        score: CRITICAL,
        scope: Scope::Any,
        // (Mongo's own methods: an ORM's `db.session.delete(x)` is not one.)
        pattern: r"\bdb\.[\w$]+\.(?:insert(?:one|many)?|find(?:one|andmodify|oneand\w+)?|update(?:one|many)?|deleteone|deletemany|drop|aggregate|countdocuments|mapreduce|renamecollection)\s*\(|\bdb\.(?:eval|getcollection\w*|dropdatabase|runcommand|getsiblingdb)\s*\(",
    },
    Rule {
        // A value that ends a statement and declares a variable: script
        // injected into a query a server evaluates (`0;var d = new Date()…`).
        name: "js.statement",
        category: Category::Command,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"^[\w'\x22)]{0,16}\s*;(?:var|let|const)\s+[a-z_$][\w$]*\s*=",
    },
    Rule {
        // LDAP filter syntax: a composition (`(|(`, `)(&(`), a filter that
        // opens onto `objectclass`, or an extensible match (`cn:2.5.13.2:=`).
        name: "ldap.filter",
        category: Category::Ldap,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\([|&!]\([\w.-]+[~<>]?=[^=]|\)\([|&!]\(|\([|&]\(objectclass=|\b[\w-]+:(?:dn:)?\d+(?:\.\d+)+:=",
    },
    Rule {
        // Mail commands in a value that may become a mail's envelope or a
        // mail server's input: a line that is only SMTP's `RCPT TO:` or
        // `MAIL FROM:`, an IMAP tagged command in its exact form (`a1
        // capability`, `a2 fetch 1:*`), or a value that starts with a line
        // break and then a bare SMTP or POP3 command or any IMAP command.
        name: "crlf.mail_command",
        category: Category::Crlf,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"(?:^|[\r\n])[ \t]*(?:rcpt[ \t]+to|mail[ \t]+from)[ \t]*:[ \t]*<?[^\s@<>]+@[^\s<>]+>?[ \t]*(?:[\r\n]|$)|[\r\n][ \t]*[a-z]{0,4}\d{1,5}[ \t]+(?:(?:capability|noop|logout|starttls|check|close|expunge)[ \t]*(?:[\r\n]|$)|(?:fetch|store|copy|uid[ \t]+[a-z]+)[ \t]+[\d:*,]+(?:\s|$))|^[\r\n]+[ \t]*(?:quit|rset|data|noop|starttls|(?:helo|ehlo)[ \t]+\S+)[ \t]*(?:[\r\n]|$)|^[\r\n]+[ \t]*[a-z]{0,4}\d{1,5}[ \t]+(?:capability|fetch|login|select|examine|logout|lsub|status|append|store|copy|uid|search|authenticate|starttls|noop|list|delete|create|rename|subscribe|expunge)\b",
    },
    Rule {
        // GraphQL introspection: the schema asked for, from an API that
        // serves no GraphQL (a scanner mapping what it could attack).
        name: "probe.graphql_introspection",
        category: Category::Probe,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b__schema\b\s*\{|\b__type\s*\(\s*name\s*:|\bintrospectionquery\b",
    },
    Rule {
        // A script sink called without its name and a bracket side by
        // side: `alert.call(…)`, `(confirm)(1)`, `'-prompt(1)//`.
        name: "xss.sink_call",
        category: Category::Xss,
        score: CRITICAL,
        scope: Scope::Any,
        pattern: r"\b(?:alert|confirm|prompt|eval|settimeout|setinterval|execscript)\)?\.(?:call|apply|bind)\(|\((?:0\s*,\s*)?(?:alert|confirm|prompt|eval)\)\(|['\x22`][-+*/%|&^](?:alert|confirm|prompt|eval)(?:\(|`)",
    },
    Rule {
        name: "scanner.user_agent",
        category: Category::Scanner,
        score: CRITICAL,
        scope: Scope::UserAgent,
        pattern: r"\b(?:sqlmap|nikto|nmap|masscan|zgrab|wpscan|nuclei|acunetix|netsparker|invicti|appscan|webinspect|w3af|arachni|skipfish|dirbuster|dirb|gobuster|feroxbuster|ffuf|wfuzz|havij|jaeles|whatweb|openvas|nessus|qualys|burp(?:suite|collaborator)?|zap/|owasp[ _]zap|wapiti|hydra|medusa|commix|xsstrike|dalfox|bbot|interactsh|fimap|paros|vega/|grabber|brutus|morfeus|zmeu)\b",
    },
    Rule {
        name: "probe.sensitive_file",
        category: Category::Probe,
        score: CRITICAL,
        scope: Scope::Path,
        pattern: r"/\.(?:[a-z0-9_][a-z0-9_.-]*)(?:[/?;]|$)|/(?:wp-admin|wp-login\.php|wp-content|wp-includes|wp-config|xmlrpc\.php|phpmyadmin|pma|myadmin|adminer|server-status|server-info|actuator|jmx-console|web-console|manager/html|cgi-bin|solr/admin|telescope|_profiler|elmah\.axd|trace\.axd|web\.config|config\.(?:php|json|yml|yaml)|(?:backup|dump|db|database|site|www)\.(?:sql|zip|tar|tgz|gz|bak|7z|rar))(?:[/.?]|$)|\.(?:bak|old|orig|swp|save|sql|mdb|sqlite|php|asp|aspx|jsp|cgi|pl|cfm)(?:$|[?;])",
    },
];

/// Headers whose values are not inspected: framing, the credential (never
/// run a secret through detectors), and values the server sets the
/// meaning of. Everything else is, as attacks arrive in any header.
const SKIPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "authorization",
    "accept",
    "accept-encoding",
    "accept-language",
    "if-match",
    "if-none-match",
    "x-csrf-token",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-dest",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "upgrade-insecure-requests",
    "te",
    "cache-control",
    "pragma",
];

/// Bounds on the work one request can cause.
/// More values than this in one request, or JSON nested deeper, is itself
/// a finding that blocks: padding must not hide an attack past a limit.
/// (Values are inspected whole; the body limit bounds their size.)
const MAX_VALUES: usize = 10_000;
const MAX_DECODE_LAYERS: usize = 3;
const MAX_JSON_DEPTH: usize = 64;
/// GraphQL: operations in one batch, aliases in one document, and nesting
/// of selections, each beyond what an application's own queries need.
const MAX_GRAPHQL_OPERATIONS: usize = 10;
const MAX_GRAPHQL_ALIASES: usize = 30;
const MAX_GRAPHQL_DEPTH: usize = 15;

/// Nested `${` lookups undone at most this deep.
const MAX_LOOKUP_DEPTH: usize = 64;

/// Cookies whose values are secrets (the session token), skipped like
/// `SECRET_KEYS`; a test in the HTTP crate keeps this in step with its
/// `SESSION_COOKIE`.
pub const SECRET_COOKIES: &[&str] = &["__Host-rampart_session", "__Host-rampart_device"];

/// JSON keys whose values are secrets: in a JSON body they are never run
/// through the detectors (a password may contain anything, and must not be
/// copied into a detector's working memory more than needed). Every
/// `SecretString` field of the API's bodies is here (a test reads them
/// from the proto crate's source). Forms and queries skip only a typed
/// password (`typed_password`).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "password",
    "invite_token",
    "current_password",
    "new_password",
    "unlock_code",
    "mfa_token",
    "token",
    "code",
    "recovery_code",
    "device_token",
];

pub struct Inspector {
    set: regex::bytes::RegexSet,
    /// Values worth the SQL tokeniser.
    sqlish: regex::bytes::Regex,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("rules", &RULES.len())
            .finish()
    }
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

/// One request, as the inspector sees it. Borrowed: nothing is copied until
/// a value needs decoding.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Header names lower-cased, as `http` keeps them.
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub content_type: Option<&'a str>,
    pub body: Option<&'a [u8]>,
}

impl Inspector {
    /// A request scoring this much is an attack: one critical finding, or
    /// two lesser ones.
    pub const THRESHOLD: u32 = 5;

    pub fn new() -> Self {
        // Bytes and ASCII classes: `\b`, `\w` and `\s` stay on the fast
        // engines whatever the input holds, and matching is linear.
        let set = regex::bytes::RegexSetBuilder::new(RULES.iter().map(|r| r.pattern))
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .expect("inspection rules compile");
        let sqlish = regex::bytes::RegexBuilder::new(
            r"['\x22`#;=<>(|&]|--|/\*|\b(?:or|and|xor|not|union|select|having|order|group|insert|update|delete|drop|exec|execute|waitfor|sleep|benchmark|like|rlike|regexp|between|case|when|limit|procedure|into|from|where|null|is)\b",
        )
        .case_insensitive(true)
        .unicode(false)
        .build()
        .expect("SQL pre-check compiles");
        Self { set, sqlish }
    }

    /// Inspects the head (path, query, headers, cookies) and/or the body.
    pub fn inspect(&self, req: &Request<'_>, head: bool, body: bool) -> Verdict {
        let mut v = Verdict::default();
        let mut budget = MAX_VALUES;
        if head {
            self.path(req.path, &mut v, &mut budget);
            if let Some(q) = req.query {
                self.form(q, Part::Query, &mut v, &mut budget);
            }
            for (name, value) in &req.headers {
                if SKIPPED_HEADERS.contains(name) {
                    continue;
                }
                if value.iter().any(|&b| is_control(b)) {
                    v.add(
                        "protocol.control_char",
                        Category::Protocol,
                        Part::Header,
                        CRITICAL,
                    );
                }
                let value = String::from_utf8_lossy(value);
                match *name {
                    // This API never takes a method from anywhere but the
                    // request line; a proxy or framework in front might.
                    "x-http-method-override" | "x-http-method" | "x-method-override"
                        if overriding_method(&value) =>
                    {
                        v.add(
                            "protocol.method_override",
                            Category::Protocol,
                            Part::Header,
                            CRITICAL,
                        );
                    }
                    "cookie" => {
                        // Control characters only: another site's script may
                        // set a Latin-1 cookie on a parent domain.
                        if percent_encoding::percent_decode_str(&value).any(is_control) {
                            v.add(
                                "protocol.control_char",
                                Category::Protocol,
                                Part::Cookie,
                                CRITICAL,
                            );
                        }
                        for pair in value.split(';') {
                            let (k, val) = pair.split_once('=').unwrap_or(("", pair));
                            let k = k.trim();
                            self.value(k, Part::Cookie, false, &mut v, &mut budget);
                            if !SECRET_COOKIES.contains(&k) {
                                self.value(val.trim(), Part::Cookie, false, &mut v, &mut budget);
                            }
                        }
                    }
                    // A User-Agent shaped as RFC 9110 says (products and
                    // comments) gets the rules written for agents; anything
                    // else in it is a value like any other header's.
                    "user-agent" if user_agent_shaped(&value) => {
                        self.value(&value, Part::UserAgent, false, &mut v, &mut budget)
                    }
                    "user-agent" => {
                        self.value(&value, Part::Header, false, &mut v, &mut budget);
                        self.value(&value, Part::UserAgent, false, &mut v, &mut budget);
                    }
                    // Many byte ranges (overlapping, out of order) make a
                    // server send a body many times over; this API serves
                    // none, and no browser asks for more than a few.
                    "range" if value.matches(',').count() >= 5 => {
                        v.add("protocol.range", Category::Protocol, Part::Header, CRITICAL);
                    }
                    n if n.contains("filename")
                        || n.contains("file-name")
                        || n.contains("file_name")
                        || n.contains("file.name") =>
                    {
                        self.value(&value, Part::Filename, false, &mut v, &mut budget);
                        self.value(&value, Part::Header, false, &mut v, &mut budget);
                    }
                    _ => self.value(&value, Part::Header, false, &mut v, &mut budget),
                }
            }
        }
        if body {
            if let Some(b) = req.body {
                self.body(b, req.content_type, &mut v, &mut budget);
            }
        }
        v
    }

    fn path(&self, path: &str, v: &mut Verdict, budget: &mut usize) {
        encoding_checks(path, Part::Path, v);
        // The whole path for probes, then each segment as a value.
        let decoded = percent(path);
        let lower = decoded.to_lowercase();
        // RFC 8615 names live under `/.well-known/`; other dot-segments are
        // probes for files no API serves.
        let probe = lower.strip_prefix("/.well-known/").unwrap_or(&lower);
        self.rules_on(probe, Part::Path, false, true, v);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.value(seg, Part::Path, false, v, budget);
            // Some frameworks read `+` in a path as a space, as in a query.
            if seg.contains('+') {
                self.value(&seg.replace('+', " "), Part::Path, false, v, budget);
            }
        }
    }

    fn form(&self, s: &str, part: Part, v: &mut Verdict, budget: &mut usize) {
        if matches!(part, Part::Query) {
            encoding_checks(s, part, v);
        }
        for pair in s.split('&') {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            let k = plus_percent(k);
            if k.eq_ignore_ascii_case("_method") && overriding_method(val) {
                v.add(
                    "protocol.method_override",
                    Category::Protocol,
                    part,
                    CRITICAL,
                );
            }
            self.value(&k, part, false, v, budget);
            // The API takes its secrets as JSON (`SECRET_KEYS`); a form or
            // query may carry a typed password, but a field called `code`
            // or `token` there is anyone's, and is inspected.
            if typed_password(&k) {
                continue;
            }
            let val = plus_percent(val);
            let url_like = looks_url_named(&k);
            self.value(&val, part, url_like, v, budget);
            if k == "query" {
                self.graphql(&val, part, v, budget);
            }
        }
    }

    fn body(&self, body: &[u8], content_type: Option<&str>, v: &mut Verdict, budget: &mut usize) {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let text = String::from_utf8_lossy(body);
        if ct.contains("json") || (ct.is_empty() && text.trim_start().starts_with(['{', '['])) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                self.json(&json, None, 0, v, budget);
                return;
            }
        }
        if ct.starts_with("application/x-www-form-urlencoded") {
            self.form(&text, Part::Body, v, budget);
            return;
        }
        if ct.starts_with("multipart/form-data") {
            // The boundary as sent (case matters).
            if let Some(b) = parameter(content_type.unwrap_or(""), "boundary") {
                self.multipart(&text, b, v, budget);
                return;
            }
        }
        // A multipart body sent under another type (or none) is still
        // read as one: its first line names the boundary.
        if let Some(b) = multipart_shape(&text) {
            self.multipart(&text, b, v, budget);
            return;
        }
        // XML (SOAP included): each text, attribute value and CDATA
        // section as a value, as the application's parser will read them;
        // the whole text is still one value below, for what lives in the
        // markup itself (entities, DOCTYPE, processing instructions).
        let start = text.trim_start();
        let bom16 = body.starts_with(&[0xfe, 0xff]) || body.starts_with(&[0xff, 0xfe]);
        if ct.contains("xml") || start.starts_with("<?xml") || bom16 {
            // What is inspected is read as UTF-8: a document in another
            // encoding (UTF-16, EBCDIC…) hides its content.
            if !xml_readable(body, &ct) {
                v.add("xml.encoding", Category::Protocol, Part::Body, CRITICAL);
            }
            let pieces = xml_pieces(&text);
            for x in xml_values(&pieces) {
                self.value(x, Part::Body, false, v, budget);
            }
            // The text as a DOM reads it: nodes, CDATA sections and what
            // comments split, joined (`x'<![CDATA[]]> OR '1'='1`).
            self.value(&xml_text(&pieces), Part::Body, false, v, budget);
            self.value_as(&text, Part::Body, false, false, v, budget);
            return;
        }
        // Untyped markup may be HTML: its values, and the whole tokenised.
        if start.starts_with('<') {
            for x in xml_values(&xml_pieces(&text)) {
                self.value(x, Part::Body, false, v, budget);
            }
        } else if ct.is_empty() || ct.starts_with("text/plain") || text.contains('=') {
            // Plain text, an untyped body, or anything that reads like a
            // form: its fields too, decoded as a form would be (many
            // frameworks read an untyped body as one).
            self.form(&text, Part::Body, v, budget);
        }
        self.value(&text, Part::Body, false, v, budget);
    }

    /// Each part: the values in its headers (the field's name, its file
    /// name, each parameter), then its content. The part headers are not
    /// one value: their line breaks and names are the format, not an
    /// injection.
    fn multipart(&self, text: &str, boundary: &str, v: &mut Verdict, budget: &mut usize) {
        let delim = format!("--{boundary}");
        for part in text.split(delim.as_str()) {
            let part = part.trim_start_matches(['\r', '\n']);
            if part.is_empty() || part.starts_with("--") && part[2..].trim().is_empty() {
                continue;
            }
            let (head, content) = part
                .split_once("\r\n\r\n")
                .or_else(|| part.split_once("\n\n"))
                .unwrap_or(("", part));
            let mut charset_field = false;
            for line in head.lines() {
                let (name, params) = line.split_once(':').unwrap_or(("", line));
                self.value(name.trim(), Part::Body, false, v, budget);
                let header = name.trim().to_ascii_lowercase();
                if header == "content-disposition" && ambiguous_params(params) {
                    v.add(
                        "multipart.ambiguous_name",
                        Category::Protocol,
                        Part::Body,
                        CRITICAL,
                    );
                }
                // What is inspected is read as UTF-8: a part in another
                // charset (UTF-7, UTF-16, Shift-JIS…) or a transfer
                // encoding (RFC 7578 forbids them) hides its content.
                if header == "content-transfer-encoding"
                    && !matches!(
                        params.trim().to_ascii_lowercase().as_str(),
                        "7bit" | "8bit" | "binary"
                    )
                {
                    v.add(
                        "multipart.transfer_encoding",
                        Category::Protocol,
                        Part::Body,
                        CRITICAL,
                    );
                }
                if header == "content-type" {
                    if let Some(cs) = parameter(params, "charset") {
                        if !plain_charset(&cs.to_ascii_lowercase()) {
                            v.add(
                                "multipart.charset",
                                Category::Protocol,
                                Part::Body,
                                CRITICAL,
                            );
                        }
                    }
                }
                if header == "content-disposition" && params.contains("name=\"_charset_\"") {
                    charset_field = true;
                }
                for param in params.split(';') {
                    let (key, val) = param.split_once('=').unwrap_or(("", param));
                    let val = val.trim().trim_matches('"');
                    let key = key.trim().to_ascii_lowercase();
                    let part = if key.starts_with("filename") {
                        Part::Filename
                    } else {
                        Part::Body
                    };
                    self.value(val, part, false, v, budget);
                }
            }
            let content = content
                .strip_suffix("\r\n")
                .or_else(|| content.strip_suffix('\n'))
                .unwrap_or(content);
            // The form's own charset field (HTML's `_charset_`).
            if charset_field && !plain_charset(&content.to_ascii_lowercase()) {
                v.add(
                    "multipart.charset",
                    Category::Protocol,
                    Part::Body,
                    CRITICAL,
                );
            }
            self.value(content, Part::Body, false, v, budget);
        }
    }

    fn json(
        &self,
        j: &serde_json::Value,
        key: Option<&str>,
        depth: usize,
        v: &mut Verdict,
        budget: &mut usize,
    ) {
        if depth > MAX_JSON_DEPTH {
            v.add(
                "inspect.too_deep",
                Category::Probe,
                Part::Body,
                Self::THRESHOLD,
            );
            return;
        }
        match j {
            serde_json::Value::String(s) => {
                if key.is_some_and(|k| SECRET_KEYS.contains(&k)) {
                    return;
                }
                let url_like = key.is_some_and(looks_url_named);
                self.value(s, Part::Body, url_like, v, budget);
                if key == Some("query") {
                    self.graphql(s, Part::Body, v, budget);
                }
            }
            serde_json::Value::Array(a) => {
                // Many operations in one request (GraphQL batching): one
                // request's limits, a rate limit's included, spent many
                // times over.
                let operations = a
                    .iter()
                    .filter(|x| x.get("query").is_some_and(|q| q.is_string()))
                    .count();
                if operations > MAX_GRAPHQL_OPERATIONS {
                    v.add("graphql.batching", Category::Probe, Part::Body, CRITICAL);
                }
                for x in a {
                    self.json(x, key, depth + 1, v, budget);
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    // Keys carry operator injections (`{"$where": …}`).
                    self.value(&format!("\"{k}\":"), Part::Body, false, v, budget);
                    self.json(x, Some(k), depth + 1, v, budget);
                }
            }
            _ => {}
        }
    }

    /// A GraphQL document (a `query` field that reads as one): each string
    /// argument as a value of its own, and the shapes that turn one
    /// request into thousands of operations: many aliases (one login tried
    /// under a hundred names) and deep nesting.
    fn graphql(&self, doc: &str, part: Part, v: &mut Verdict, budget: &mut usize) {
        let Some(g) = graphql_shape(doc) else {
            return;
        };
        if g.aliases > MAX_GRAPHQL_ALIASES {
            v.add("graphql.aliasing", Category::Probe, part, CRITICAL);
        }
        if g.depth > MAX_GRAPHQL_DEPTH {
            v.add("graphql.depth", Category::Probe, part, CRITICAL);
        }
        for s in g.strings {
            self.value(s, part, false, v, budget);
        }
    }

    /// Inspects one value and its decodings.
    fn value(&self, raw: &str, part: Part, url_named: bool, v: &mut Verdict, budget: &mut usize) {
        self.value_as(raw, part, url_named, true, v, budget);
    }

    /// [`Self::value`], with the tokenisers only when `tokenise`: a whole
    /// XML document is markup by its nature, and its values are read one
    /// by one.
    fn value_as(
        &self,
        raw: &str,
        part: Part,
        url_named: bool,
        tokenise: bool,
        v: &mut Verdict,
        budget: &mut usize,
    ) {
        if raw.is_empty() {
            return;
        }
        if *budget == 0 {
            v.add(
                "inspect.too_many_values",
                Category::Probe,
                part,
                Self::THRESHOLD,
            );
            return;
        }
        *budget -= 1;
        // A short word is nothing to decode; as an agent it may still
        // name a scanner (`nikto`), and nothing else.
        if plain(raw) {
            if part == Part::UserAgent {
                let lower = raw.to_ascii_lowercase();
                for i in self.set.matches(lower.as_bytes()).iter() {
                    if matches!(RULES[i].scope, Scope::UserAgent) {
                        v.add(RULES[i].name, RULES[i].category, part, RULES[i].score);
                    }
                }
            }
            return;
        }
        let mut seen: Vec<Cow<'_, str>> = vec![Cow::Borrowed(raw)];
        let mut i = 0;
        while i < seen.len() && seen.len() <= MAX_DECODE_LAYERS * 3 {
            for next in decodings(&seen[i]) {
                if seen.len() > MAX_DECODE_LAYERS * 3 {
                    break;
                }
                if !seen.iter().any(|s| *s == next) {
                    seen.push(Cow::Owned(next));
                }
            }
            i += 1;
        }
        for s in &seen {
            let lowered = s.to_lowercase();
            let lower = undo_lookups(&lowered);
            let url_like = url_named || looks_url(&lower);
            self.rules_on(&lower, part, url_like, false, v);
            if tokenise {
                self.tokenisers(s, part, v);
            }
        }
    }

    fn tokenisers(&self, s: &str, part: Part, v: &mut Verdict) {
        if matches!(part, Part::UserAgent) {
            return;
        }
        let bytes = s.as_bytes();
        // The tokenisers are the dearest part of inspection: run each only
        // on values that could hold what it looks for (SQL needs punctuation
        // or a keyword; markup needs `<`, or a quote and `=`).
        if self.sqlish.is_match(bytes) {
            let sqli = libinjectionrs::detect_sqli(bytes);
            if sqli.is_injection() {
                // A fingerprint of numbers, words and operators alone
                // (`3*4=12 and 10/2=5`) is arithmetic as often as an
                // attack: it counts, but takes a second finding to block.
                let fp = sqli.fingerprint.as_ref().map(|f| f.as_str()).unwrap_or("");
                let arithmetic = !fp.bytes().any(|t| {
                    matches!(
                        t,
                        b's' | b'k' | b'U' | b'E' | b'f' | b'c' | b'v' | b';' | b'T' | b'A'
                    )
                });
                if arithmetic {
                    v.add(
                        "sqli.libinjection_arithmetic",
                        Category::Sqli,
                        part,
                        WARNING,
                    );
                } else {
                    v.add("sqli.libinjection", Category::Sqli, part, CRITICAL);
                }
            }
        }
        let bytes = without_xml_declaration(bytes);
        let quoted = bytes.iter().any(|b| matches!(b, b'"' | b'\'' | b'`'));
        let markup = bytes.contains(&b'<') || (quoted && bytes.contains(&b'='));
        if markup && libinjectionrs::detect_xss(bytes).is_injection() {
            v.add("xss.libinjection", Category::Xss, part, CRITICAL);
        }
    }

    /// Runs the rules on one lower-cased text. `whole_path` is the path as
    /// one string, where the router has already undone dot segments; each
    /// path segment is a value (`/items/{id}`) like any other.
    fn rules_on(&self, lower: &str, part: Part, url_like: bool, whole_path: bool, v: &mut Verdict) {
        for i in self.set.matches(lower.as_bytes()).iter() {
            let rule = &RULES[i];
            let applies = match rule.scope {
                Scope::Any => {
                    !matches!(part, Part::UserAgent)
                        || matches!(
                            rule.category,
                            Category::Log4Shell
                                | Category::Sqli
                                | Category::Xss
                                | Category::Command
                                | Category::Template
                        )
                }
                Scope::Values => !whole_path && !matches!(part, Part::UserAgent),
                Scope::Path => matches!(part, Part::Path),
                Scope::UserAgent => matches!(part, Part::UserAgent),
                // Only values the server might fetch: not headers such as
                // Origin and Referer, which name the site itself.
                Scope::UrlLike => url_like && matches!(part, Part::Query | Part::Body),
                Scope::Filename => matches!(part, Part::Filename),
            };
            if applies {
                v.add(rule.name, rule.category, part, rule.score);
            }
        }
    }
}

/// A form field that holds a typed password: one of the usual names, as
/// the field itself or its last bracketed part (`user[password]`).
fn typed_password(key: &str) -> bool {
    let last = key
        .rsplit('[')
        .next()
        .unwrap_or_default()
        .trim_end_matches(']');
    [
        "password",
        "current_password",
        "new_password",
        "password_confirmation",
    ]
    .iter()
    .any(|p| last.eq_ignore_ascii_case(p))
}

/// A method a `_method` field or an override header would turn a request
/// into: any but the safe pair a form can send anyway.
fn overriding_method(value: &str) -> bool {
    const METHODS: &[&str] = &[
        "put",
        "patch",
        "delete",
        "connect",
        "trace",
        "track",
        "options",
        "propfind",
        "proppatch",
        "mkcol",
        "copy",
        "move",
        "lock",
        "unlock",
        "search",
    ];
    let m = percent(value).trim().to_ascii_lowercase();
    METHODS.contains(&m.as_str())
}

/// What [`Inspector::graphql`] needs of a document.
struct GraphqlShape<'a> {
    strings: Vec<&'a str>,
    aliases: usize,
    depth: usize,
}

/// Reads `doc` as a GraphQL document, when it starts like one (`{`, or an
/// operation or fragment keyword): its string literals (block strings
/// included, escapes left to the value decoders), its aliases (`name:`
/// at selection level, not in arguments) and its deepest selection.
/// One linear pass; anything malformed ends it.
fn graphql_shape(doc: &str) -> Option<GraphqlShape<'_>> {
    let t = doc.trim_start();
    let tb = t.as_bytes();
    let keyword = ["query", "mutation", "subscription", "fragment"]
        .iter()
        .any(|k| {
            tb.get(..k.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(k.as_bytes()))
                && tb.get(k.len()).is_some_and(|c| !c.is_ascii_alphanumeric())
        });
    if !(t.starts_with('{') || keyword) {
        return None;
    }
    let b = doc.as_bytes();
    let mut g = GraphqlShape {
        strings: Vec::new(),
        aliases: 0,
        depth: 0,
    };
    let (mut braces, mut parens, mut i) = (0usize, 0usize, 0);
    let mut last_name_end = None;
    while i < b.len() {
        match b[i] {
            // Comments are ignored tokens: they end nothing.
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                let block = b[i..].starts_with(b"\"\"\"");
                let start = i + if block { 3 } else { 1 };
                let mut j = start;
                let end = loop {
                    if j >= b.len() {
                        break None;
                    }
                    if block {
                        if b[j..].starts_with(b"\"\"\"") {
                            break Some(j);
                        }
                    } else if b[j] == b'\\' {
                        j += 1;
                    } else if b[j] == b'"' || b[j] == b'\n' {
                        break Some(j);
                    }
                    j += 1;
                };
                let end = end.unwrap_or(b.len());
                if let Some(s) = doc.get(start..end) {
                    if !s.is_empty() {
                        g.strings.push(s);
                    }
                }
                i = end + if block { 3 } else { 1 };
                last_name_end = None;
                continue;
            }
            // Selections only: braces inside arguments are input objects.
            b'{' if parens == 0 => {
                braces += 1;
                g.depth = g.depth.max(braces);
            }
            b'}' if parens == 0 => braces = braces.saturating_sub(1),
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
            b':' if parens == 0 && braces > 0 && last_name_end.is_some() => g.aliases += 1,
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                last_name_end = Some(i);
                continue;
            }
            c if c.is_ascii_whitespace() || c == b',' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        last_name_end = None;
        i += 1;
    }
    Some(g)
}

/// A control character other than tab and line breaks (those have rules
/// of their own, as has NUL).
fn is_control(b: u8) -> bool {
    matches!(b, 0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f)
}

/// What a URL or cookie decodes to must be text: control characters
/// (outside a query), and bytes that are not UTF-8 (overlong forms such as `%c0%af` included),
/// are read differently by each decoder behind, so what is inspected
/// would not be what the application reads.
fn encoding_checks(raw: &str, part: Part, v: &mut Verdict) {
    if !raw.contains('%') && !raw.bytes().any(is_control) {
        return;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    // (A query may carry pasted text, terminal overstrikes and chat
    // colour codes included.)
    if part != Part::Query && decoded.iter().any(|&b| is_control(b)) {
        v.add("protocol.control_char", Category::Protocol, part, CRITICAL);
    }
    if std::str::from_utf8(&decoded).is_err() {
        v.add("protocol.invalid_utf8", Category::Protocol, part, CRITICAL);
    }
}

/// Whether a User-Agent has the shape RFC 9110 section 10.1.5 gives it:
/// products (`name/version`) and comments (`(…)`, nested at most a few
/// deep), separated by spaces. Real agents do; a command, a query or a
/// path sent as the agent does not.
fn user_agent_shaped(ua: &str) -> bool {
    // What real agents put in a product (`Chrome/126.0.0.0`) and in a
    // comment (`Windows NT 10.0; Win64; x64`, `+http://…/bot.html`, an
    // e-mail address): anything else (quotes, `$`, `%`, `|`, `&`, `*`,
    // `..`) is not an agent, and is read as a header value.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!+-._~".contains(&b);
    let ctext = |b: u8| b.is_ascii_alphanumeric() || b" ;:,./_+-~@=#?[]".contains(&b);
    if ua.contains("..") {
        return false;
    }
    let b = ua.trim().as_bytes();
    let mut i = 0;
    let mut products = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'(' => {
                let mut depth = 0usize;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'(') => depth += 1,
                        Some(b')') => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        Some(&c) if ctext(c) => {}
                        Some(_) => return false,
                    }
                    if depth > 4 {
                        return false;
                    }
                    i += 1;
                }
            }
            c if tchar(c) => {
                while i < b.len() && tchar(b[i]) {
                    i += 1;
                }
                if b.get(i) == Some(&b'/') {
                    i += 1;
                    let start = i;
                    while i < b.len() && tchar(b[i]) {
                        i += 1;
                    }
                    if i == start {
                        return false;
                    }
                }
                products += 1;
            }
            _ => return false,
        }
    }
    products > 0
}

/// A `Content-Disposition` whose `name` or `filename` parsers would read
/// differently: a quoted value holding `;`, `=` or an escaped quote, or a
/// field name with a quote or a backslash. (A file name may hold an
/// apostrophe: people's names do.)
fn ambiguous_params(params: &str) -> bool {
    let mut rest = params;
    while let Some(i) = rest.find('=') {
        let key = rest[..i]
            .rsplit([';', ' '])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let after = &rest[i + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => {
                // Up to the closing quote, an escaped one included.
                let mut end = None;
                let mut escaped = false;
                for (j, c) in q.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => {
                            end = Some(j);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                match end {
                    Some(j) => (&q[..j], &q[j + 1..]),
                    None => return true,
                }
            }
            None => {
                let j = after.find(';').unwrap_or(after.len());
                (&after[..j], &after[j..])
            }
        };
        // HTML forms write what the charset lacks as character references
        // (`&auml;`, `&#228;`): their `;` is not a separator.
        let value = without_char_refs(value);
        let odd = match key.as_str() {
            "name" => value.contains([';', '=', '"', '\'', '\\']),
            // People name files `Smith; John.pdf`; old browsers send `C:\…`.
            "filename" => value.contains('"'),
            _ => false,
        };
        if odd {
            return true;
        }
        rest = next;
    }
    false
}

/// `s` without its HTML character references (`&amp;`, `&#228;`, `&#xe4;`).
fn without_char_refs(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        // A reference is short: look no further than its longest form, so
        // a run of `&` costs one pass, not one per `&`.
        let window = &after.as_bytes()[..after.len().min(12)];
        let body = window.iter().position(|&c| c == b';').map(|j| &after[..j]);
        let reference = body.is_some_and(|b| {
            (2..=10).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric())
                || b.strip_prefix('#').is_some_and(|n| {
                    let n = n.strip_prefix(['x', 'X']).unwrap_or(n);
                    (1..=6).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_hexdigit())
                })
        });
        match body {
            Some(b) if reference => rest = &after[b.len() + 1..],
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The value of parameter `name` in a header value (`type; a=1; b="2"`),
/// matched whole (`xcharset=` is not `charset=`), unquoted.
fn parameter<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The charsets inspection reads as they are: UTF-8 and its subsets.
fn plain_charset(cs: &str) -> bool {
    matches!(
        cs.trim().trim_matches('"'),
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "iso-8859-1" | "latin1" | "windows-1252"
    )
}

/// The boundary of a body shaped like multipart form data: a first line
/// `--<boundary>` and a part's `Content-Disposition`.
fn multipart_shape(text: &str) -> Option<&str> {
    let first = text.lines().next()?.trim_end_matches('\r');
    let b = first.strip_prefix("--")?;
    let ok = (1..=70).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c));
    let disposition = text
        .get(..text.len().min(4096))
        .unwrap_or(text)
        .to_ascii_lowercase()
        .contains("content-disposition:");
    (ok && disposition).then_some(b)
}

/// One piece of an XML document, as [`xml_pieces`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XmlPiece<'a> {
    /// Text between tags, untrimmed; also the rest of an unclosed tag.
    Text(&'a str),
    Cdata(&'a str),
    Comment(&'a str),
    /// An attribute's value, quoted with `"` or `'`.
    Attribute(&'a str),
    /// The end of a tag (or of a DOCTYPE or other `<!…>`); a processing
    /// instruction ends nothing.
    TagEnd,
}

/// Reads XML into its pieces, borrowed from the body. Lenient and
/// linear: malformed markup ends the scan with the rest as one piece,
/// never an error (a request must not hide its content by being badly
/// formed). Entities are left to the value decoders. Both readings the
/// guard makes of a document come from here: its values
/// ([`xml_values`]) and its text ([`xml_text`]).
fn xml_pieces(text: &str) -> Vec<XmlPiece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        if open > 0 {
            out.push(XmlPiece::Text(&rest[..open]));
        }
        rest = &rest[open..];
        // (opening length, closing, what the inside is: a comment's and a
        // CDATA section's are values; a processing instruction is nothing,
        // a declaration ends like a tag)
        let special = if rest.starts_with("<!--") {
            Some((4, "-->", b'c'))
        } else if rest.starts_with("<![CDATA[") {
            Some((9, "]]>", b'd'))
        } else if rest.starts_with("<?") {
            Some((2, "?>", b'?'))
        } else if rest.starts_with("<!") {
            Some((2, ">", b'!'))
        } else {
            None
        };
        if let Some((inner, close, kind)) = special {
            let end = rest[inner..].find(close);
            let inside = &rest[inner..inner + end.unwrap_or(rest.len() - inner)];
            match kind {
                b'c' => out.push(XmlPiece::Comment(inside)),
                b'd' => out.push(XmlPiece::Cdata(inside)),
                b'!' => out.push(XmlPiece::TagEnd),
                _ => {}
            }
            match end {
                Some(end) => rest = &rest[inner + end + close.len()..],
                None => return out,
            }
            continue;
        }
        // A tag: its name, then `name="value"` or `name='value'` pairs.
        let b = rest.as_bytes();
        let mut i = 1;
        loop {
            match b.get(i) {
                None => {
                    out.push(XmlPiece::Text(&rest[1..]));
                    return out;
                }
                Some(b'>') => {
                    out.push(XmlPiece::TagEnd);
                    i += 1;
                    break;
                }
                Some(&q @ (b'"' | b'\'')) => match rest[i + 1..].find(q as char) {
                    Some(len) => {
                        out.push(XmlPiece::Attribute(&rest[i + 1..i + 1 + len]));
                        i += len + 2;
                    }
                    None => {
                        out.push(XmlPiece::Attribute(&rest[i + 1..]));
                        return out;
                    }
                },
                Some(_) => i += 1,
            }
        }
        rest = &rest[i..];
    }
    if !rest.is_empty() {
        out.push(XmlPiece::Text(rest));
    }
    out
}

/// The values an XML parser hands an application: each text node,
/// attribute value, CDATA section and comment, trimmed, empty ones left
/// out.
fn xml_values<'a>(pieces: &[XmlPiece<'a>]) -> Vec<&'a str> {
    pieces
        .iter()
        .filter_map(|p| match *p {
            XmlPiece::Text(s)
            | XmlPiece::Cdata(s)
            | XmlPiece::Comment(s)
            | XmlPiece::Attribute(s) => Some(s.trim()),
            XmlPiece::TagEnd => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The text of an XML document as a DOM's `textContent` reads it: text
/// and CDATA joined where only comments or processing instructions stand
/// between them, a line break where a tag does.
fn xml_text(pieces: &[XmlPiece<'_>]) -> String {
    let mut out = String::new();
    for p in pieces {
        match *p {
            XmlPiece::Text(s) | XmlPiece::Cdata(s) => out.push_str(s),
            XmlPiece::TagEnd => out.push('\n'),
            XmlPiece::Comment(_) | XmlPiece::Attribute(_) => {}
        }
    }
    out
}

/// An XML body in UTF-8 (or ASCII, or ISO-8859-1, which reading as UTF-8
/// does not hide): no byte-order mark of UTF-16 or UTF-32, no other
/// `encoding=` in the declaration, no other `charset=` in the type.
fn xml_readable(body: &[u8], content_type: &str) -> bool {
    let plain = |e: &str| {
        matches!(
            e.trim()
                .trim_matches(['"', '\''])
                .to_ascii_lowercase()
                .as_str(),
            "utf-8" | "utf8" | "us-ascii" | "ascii" | "iso-8859-1" | "latin1"
        )
    };
    if body.starts_with(&[0xfe, 0xff])
        || body.starts_with(&[0xff, 0xfe])
        || body.starts_with(&[0, 0])
    {
        return false;
    }
    if let Some(cs) = parameter(content_type, "charset") {
        if !plain(cs) {
            return false;
        }
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(200)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if let Some(decl) = head.strip_prefix("<?xml") {
        let decl = decl.split("?>").next().unwrap_or("");
        if let Some(enc) = decl.split("encoding").nth(1) {
            let value: String = enc
                .trim_start()
                .trim_start_matches('=')
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '?')
                .collect();
            if !plain(&value) {
                return false;
            }
        }
    }
    true
}

/// Markup without a leading XML declaration (`<?xml version="1.0"?>`),
/// which the HTML tokeniser would take for a processing instruction.
fn without_xml_declaration(b: &[u8]) -> &[u8] {
    let t = b.trim_ascii_start();
    if t.len() > 6 && t[..5].eq_ignore_ascii_case(b"<?xml") && t[5].is_ascii_whitespace() {
        // A browser ends it at the first `>`: only a declaration that
        // closes there, with `?>` and nothing markup-like inside, goes.
        if let Some(end) = t.iter().position(|&c| c == b'>') {
            if end > 0 && t[end - 1] == b'?' && !t[1..end].contains(&b'<') {
                return &t[end + 1..];
            }
        }
    }
    b
}

/// Nothing an attack can be made of: a short run of letters and digits
/// (ids, numbers, words) that is not a class name or encoded text.
fn plain(s: &str) -> bool {
    s.len() <= 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Percent-decoded, overlong UTF-8 included (see [`overlong_percent`]).
fn percent(s: &str) -> Cow<'_, str> {
    match overlong_percent(s) {
        Some(d) => Cow::Owned(
            percent_encoding::percent_decode_str(&d)
                .decode_utf8_lossy()
                .into_owned(),
        ),
        None => percent_encoding::percent_decode_str(s).decode_utf8_lossy(),
    }
}

fn plus_percent(s: &str) -> String {
    percent(&s.replace('+', " ")).into_owned()
}

fn looks_url(lower: &str) -> bool {
    lower.starts_with("//")
        || lower.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme.len() <= 12
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'.' || b == b'-')
        })
}

fn looks_url_named(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "url", "uri", "link", "href", "src", "callback", "webhook", "redirect", "return", "next",
        "target", "dest", "host", "domain", "feed", "endpoint", "proxy", "image",
    ]
    .iter()
    .any(|n| k.contains(n))
}

/// One layer of each decoding that changes the value.
/// NFKC, with its growth bounded: a few characters expand to many
/// (U+FDFA to 18), so a body of them would multiply the memory inspection
/// needs. Past twice the input, each character that grows more than
/// twofold is kept as it is (nothing an attack spells is that long).
fn compatibility_form(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let d: String = s.nfkc().collect();
    if d.len() <= 2 * s.len() {
        return d;
    }
    let mut out = String::with_capacity(2 * s.len());
    let mut one = String::new();
    for c in s.chars() {
        one.clear();
        one.extend(std::iter::once(c).nfkc());
        if one.len() <= 2 * c.len_utf8() {
            out.push_str(&one);
        } else {
            out.push(c);
        }
    }
    out
}

/// Slashes and dots that NFKC keeps but path code may take for the ASCII
/// ones (`..∕etc∕passwd`, from `%u2215`).
fn lookalike_separators(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{2571}' => '/',
            '\u{2216}' | '\u{29F5}' | '\u{29F9}' | '\u{2572}' => '\\',
            '\u{2024}' | '\u{FF61}' | '\u{3002}' => '.',
            c => c,
        })
        .collect()
}

/// Overlong UTF-8 in percent-encoding (`%c0%ae` for `.`, `%c0%af` and
/// `%e0%80%af` for `/`), which strict decoders refuse and some old ones
/// turn into the ASCII character: those turned into it (other escapes are
/// left for the percent-decoding that follows).
fn overlong_percent(s: &str) -> Option<String> {
    // A quick look first: this runs on every percent-encoded value.
    let lead = |w: &[u8]| {
        w[0] == b'%' && matches!(w[1], b'c' | b'C' | b'e' | b'E') && matches!(w[2], b'0' | b'1')
    };
    if !s.as_bytes().windows(3).any(lead) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let b = lower.as_bytes();
    let hex = |i: usize| -> Option<u8> {
        (b.get(i) == Some(&b'%'))
            .then(|| std::str::from_utf8(b.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        match (hex(i), hex(i + 3), hex(i + 6)) {
            (Some(lead @ (0xc0 | 0xc1)), Some(cont), _) if cont & 0xc0 == 0x80 || cont < 0x80 => {
                out.push(char::from(((lead & 0x1f) << 6) | (cont & 0x3f)));
                i += 6;
            }
            (Some(0xe0), Some(0x80), Some(cont)) if cont & 0xc0 == 0x80 => {
                out.push(char::from(cont & 0x3f));
                i += 9;
            }
            _ => {
                let c = s[i..].chars().next()?;
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Some(out)
}

fn decodings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.contains('%') {
        let d = percent(s);
        if d != s {
            out.push(d.into_owned());
        }
        if s.contains("%u") || s.contains("%U") {
            if let Some(d) = unicode_escapes(s, "%u") {
                out.push(d);
            }
        }
    }
    if s.contains('&') {
        if let Some(d) = html_entities(s) {
            out.push(d);
        }
    }
    if s.contains("\\u") || s.contains("\\x") {
        if let Some(d) = unicode_escapes(s, "\\u") {
            out.push(d);
        }
    }
    out.extend(base64ish(s));
    // Fullwidth and other compatibility forms (`＜script＞`, `①②⑦`) as the
    // ASCII they stand for.
    if !s.is_ascii() {
        let d = lookalike_separators(&compatibility_form(s));
        if d != s {
            out.push(d);
        }
    }
    // Shell evasions: empty expansions (`$u`, `$@`, `${x}`) and `${IFS}`.
    if s.contains('$') {
        if let Some(d) = shell_normalised(s) {
            out.push(d);
        }
    }
    // Shell and SQL obfuscation: quotes and backslashes inside words
    // (`c'a't`, `w\ho\am\i`), and SQL comments as spaces.
    if s.contains("/*") {
        out.push(strip_sql_comments(s));
    }
    // URL parsers drop tabs and line breaks (`ja&tab;vascript:`).
    if s.contains(':') && s.contains(['\t', '\n', '\r']) {
        out.push(s.replace(['\t', '\n', '\r'], ""));
    }
    if s.contains('<') {
        if let Some(d) = split_by_tags(s) {
            out.push(d);
        }
    }
    if s.bytes().any(|b| matches!(b, b'\'' | b'"' | b'\\')) {
        let squeezed: String = s
            .chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\'))
            .collect();
        if squeezed.len() + 1 < s.len() {
            out.push(squeezed);
        }
    }
    out
}

/// `c$@at /e$u/pa${x}sswd` → `cat /e/passwd`…, `cat${IFS}x` → `cat x`.
fn shell_normalised(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        // Only the next few bytes matter: copying the whole rest for each
        // `$` would make a long run of them quadratic.
        let head = after.as_bytes().get(..5).unwrap_or(after.as_bytes());
        let lower = head.to_ascii_lowercase();
        let skip = if lower.starts_with(b"{ifs}") {
            out.push(' ');
            5
        } else if lower.starts_with(b"ifs") {
            out.push(' ');
            3
        } else if after.starts_with(['@', '*']) {
            1
        } else if let Some(j) = short_braced_name(after) {
            j + 2
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic())
            && !after[1..].starts_with(|c: char| {
                c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == '{'
            })
        {
            1
        } else {
            out.push('$');
            0
        };
        changed |= skip > 0;
        rest = &after[skip..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// `{name}` of at most 8 word characters at the start of `s`: the length of
/// `name`. Looks at the next 10 bytes only.
fn short_braced_name(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let window = &b[1..b.len().min(10)];
    let j = window.iter().position(|&c| c == b'}')?;
    window[..j]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .then_some(j)
}

fn strip_sql_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push(' ');
        let inner = &rest[i + 2..];
        let end = inner.find("*/");
        // MySQL runs what a `/*!` (or `/*!50000`) comment holds: kept.
        if let Some(code) = inner.strip_prefix('!') {
            let code = code.trim_start_matches(|c: char| c.is_ascii_digit());
            let until = end.map_or(code.len(), |j| j - (inner.len() - code.len()));
            out.push_str(&code[..until]);
            out.push(' ');
        }
        match end {
            Some(j) => rest = &inner[j + 2..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// `autof<x>ocus o<x>nfocus` → `autofocus onfocus`: short empty tags
/// inside words, which a browser's parser removes and a filter does not.
fn split_by_tags(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        if b[i] == b'<' && i > 0 && b[i - 1].is_ascii_alphanumeric() {
            let tag = b[i + 1..]
                .iter()
                .take(9)
                .position(|&c| c == b'>')
                .filter(|&n| n > 0 && b[i + 1..i + 1 + n].iter().all(u8::is_ascii_alphabetic));
            if let Some(n) = tag {
                if b.get(i + 2 + n)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'(')
                {
                    i += n + 2;
                    changed = true;
                    continue;
                }
            }
        }
        let c = s[i..].chars().next()?;
        out.push(c);
        i += c.len_utf8();
    }
    changed.then_some(out)
}

/// Decodes `\uXXXX` and `\xXX` (marker `\u`), or `%uXXXX` (marker `%u`),
/// in one pass.
fn unicode_escapes(s: &str, marker: &str) -> Option<String> {
    let lead = marker.as_bytes()[0];
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        let width = match (b[i], b[i + 1]) {
            (l, b'u' | b'U') if l == lead => 4,
            (b'\\', b'x') if lead == b'\\' => 2,
            _ => {
                i += 1;
                continue;
            }
        };
        let decoded = s
            .get(i + 2..i + 2 + width)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push_str(&s[copied..i]);
                out.push(c);
                changed = true;
                i += 2 + width;
                copied = i;
            }
            None => i += 2,
        }
    }
    out.push_str(&s[copied..]);
    changed.then_some(out)
}

fn html_entities(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let decoded = if let Some(num) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
        {
            u32::from_str_radix(num, 16).ok().and_then(char::from_u32)
        } else if let Some(num) = name.strip_prefix('#') {
            num.parse::<u32>().ok().and_then(char::from_u32)
        } else {
            match name.to_ascii_lowercase().as_str() {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                "colon" => Some(':'),
                "sol" => Some('/'),
                "lpar" => Some('('),
                "rpar" => Some(')'),
                "tab" => Some('\t'),
                "newline" => Some('\n'),
                "semi" => Some(';'),
                "equals" => Some('='),
                "grave" => Some('`'),
                _ => None,
            }
        };
        match decoded {
            Some(c) if !name.is_empty() => {
                out.push(c);
                changed = true;
                let skip = end + usize::from(after[end..].starts_with(';'));
                rest = &after[skip..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// A value that is all base64 and decodes to mostly printable text, at
/// any alignment.
fn base64ish(s: &str) -> Vec<String> {
    let t = s.trim().trim_end_matches('=');
    // Base64 of text mixes cases; words, hex and numbers do not, and are
    // not worth four decodings each.
    if t.len() < 8
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
        || !t.bytes().any(|b| b.is_ascii_uppercase())
        || !t.bytes().any(|b| b.is_ascii_lowercase())
    {
        return Vec::new();
    }
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    // A piece cut from a longer encoding (a serialized object's class
    // names, say) starts anywhere in a 4-character group: each of the four
    // alignments is decoded, and a partial group at the end dropped.
    let mut out = Vec::new();
    for skip in 0..4 {
        let rest = &t[skip..];
        let rest = &rest[..rest.len() - usize::from(rest.len() % 4 == 1)];
        let Some(bytes) = engines.iter().find_map(|e| e.decode(rest).ok()) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let printable = text
            .chars()
            .filter(|c| !c.is_control() || c.is_whitespace())
            .count();
        if text.len() >= 8 && printable * 10 >= text.chars().count() * 9 {
            out.push(text);
        }
    }
    out
}

/// Undoes Log4j lookups that only hide letters: `${lower:j}`, `${::-n}`,
/// `${env:X:-d}`, so `${${lower:j}ndi:…}` reads as `${jndi:…}`. One pass
/// with a stack of open lookups, innermost resolved first.
fn undo_lookups(s: &str) -> Cow<'_, str> {
    if !s.contains("${") {
        return Cow::Borrowed(s);
    }
    let mut stack: Vec<String> = vec![String::with_capacity(s.len())];
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") && stack.len() <= MAX_LOOKUP_DEPTH {
            stack.push(String::new());
            rest = &rest[2..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c == '}' && stack.len() > 1 {
            let inner = stack.pop().unwrap_or_default();
            let resolved = if let Some((_, default)) = inner.split_once(":-") {
                default.to_owned()
            } else if let Some(letters) = inner
                .strip_prefix("lower:")
                .or_else(|| inner.strip_prefix("upper:"))
            {
                letters.to_owned()
            } else {
                format!("${{{inner}}}")
            };
            if let Some(top) = stack.last_mut() {
                top.push_str(&resolved);
            }
            continue;
        }
        if let Some(top) = stack.last_mut() {
            top.push(c);
        }
    }
    // Lookups never closed stay as they were written.
    let mut out = String::new();
    for (i, part) in stack.iter().enumerate() {
        if i > 0 {
            out.push_str("${");
        }
        out.push_str(part);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
