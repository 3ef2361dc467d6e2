"""The catalog, described without OIDs, for comparing two databases: the
member objects of extensions with their definitions, grants, initial
privileges and comments (MEMBERS), the extensions' rows (EXTENSION), and
the user's objects that depend on lambda_fdw (USER_OBJECTS). Used by
upgrade.py and names.py."""
import difflib


# Every object of the extensions named in the parameter (a text array), one
# line each, prefixed with the extension's name, in a form that does not
# depend on OIDs: what it is, its definition, its ACL and initial privileges,
# its comment. Objects that belong to a member without being members
# themselves (columns, identity sequences, constraints, indexes, policies,
# triggers, composite attributes) are part of their owner's line.
MEMBERS = r"""
WITH m AS (
  SELECT e.extname, d.classid, d.objid, d.objsubid
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
     AND d.deptype = 'e' AND e.extname = ANY(%s)
)
SELECT m.extname, pg_catalog.pg_describe_object(m.classid, m.objid, m.objsubid) AS object,
       CASE m.classid
       WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
         (SELECT pg_catalog.pg_get_functiondef(p.oid) || ' owner=' || p.proowner::regrole
                 || ' acl=' || coalesce(p.proacl::text, 'default')
            FROM pg_catalog.pg_proc p WHERE p.oid = m.objid)
       WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
         (SELECT 'relkind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
                 || ' owner=' || c.relowner::regrole
                 || ' acl=' || coalesce(c.relacl::text, 'default')
                 || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                 || ' options=' || coalesce(c.reloptions::text, '{}')
                 || E'\n  columns: ' || coalesce((
                      SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                               || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
                               || CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text || (
                                    SELECT ' sequence(' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement,
                                                                     s.seqmax, s.seqmin, s.seqcache, s.seqcycle) || ')'
                                      FROM pg_catalog.pg_sequence s
                                     WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence(
                                             c.oid::regclass::text, a.attname)::regclass) END
                               || coalesce(' acl=' || a.attacl::text, '')
                               || coalesce(' comment=' || pg_catalog.col_description(a.attrelid, a.attnum), ''),
                             ', ' ORDER BY a.attnum)
                        FROM pg_catalog.pg_attribute a
                        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                 || E'\n  constraints: ' || coalesce((
                      SELECT string_agg(co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
                        FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid), '')
                 || E'\n  indexes: ' || coalesce((
                      SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
                        FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), '')
                 || E'\n  policies: ' || coalesce((
                      SELECT string_agg(po.polname || ' cmd=' || po.polcmd::text || ' permissive=' || po.polpermissive
                               || ' roles=' || po.polroles::regrole[]::text
                               || ' using=' || coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '')
                               || ' check=' || coalesce(pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), ''),
                             ', ' ORDER BY po.polname)
                        FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid), '')
                 || E'\n  triggers: ' || coalesce((
                      SELECT string_agg(pg_catalog.pg_get_triggerdef(t.oid), ', ' ORDER BY t.tgname)
                        FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
                 || CASE WHEN c.relkind = 'v' THEN E'\n  view: ' || pg_catalog.pg_get_viewdef(c.oid, true) ELSE '' END
                 || CASE WHEN c.relkind = 'S' THEN (
                      SELECT E'\n  sequence: ' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement,
                                                            s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
                        FROM pg_catalog.pg_sequence s WHERE s.seqrelid = c.oid) ELSE '' END
            FROM pg_catalog.pg_class c WHERE c.oid = m.objid)
       WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
         (SELECT 'typtype=' || t.typtype::text || ' owner=' || t.typowner::regrole
                 || ' acl=' || coalesce(t.typacl::text, 'default')
                 || ' attributes: ' || coalesce((
                      SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                        FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
            FROM pg_catalog.pg_type t WHERE t.oid = m.objid)
       WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN
         (SELECT 'owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, 'default')
            FROM pg_catalog.pg_namespace n WHERE n.oid = m.objid)
       WHEN 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass THEN
         (SELECT 'handler=' || w.fdwhandler::regprocedure || ' validator=' || w.fdwvalidator::regprocedure
                 || ' owner=' || w.fdwowner::regrole
                 || ' acl=' || coalesce(w.fdwacl::text, 'default') || ' options=' || coalesce(w.fdwoptions::text, '{}')
            FROM pg_catalog.pg_foreign_data_wrapper w WHERE w.oid = m.objid)
       WHEN 'pg_catalog.pg_event_trigger'::pg_catalog.regclass THEN
         (SELECT 'event=' || et.evtevent || ' function=' || et.evtfoid::regprocedure
                 || ' enabled=' || et.evtenabled::text || ' tags=' || coalesce(et.evttags::text, '{}')
                 || ' owner=' || et.evtowner::regrole
            FROM pg_catalog.pg_event_trigger et WHERE et.oid = m.objid)
       ELSE 'no details for catalog ' || m.classid::regclass::text
       END AS definition,
       (SELECT i.privtype::text || ' ' || i.initprivs::text FROM pg_catalog.pg_init_privs i
         WHERE i.objoid = m.objid AND i.classoid = m.classid AND i.objsubid = m.objsubid) AS init_privs,
       pg_catalog.obj_description(m.objid, (SELECT relname FROM pg_catalog.pg_class WHERE oid = m.classid)) AS comment
  FROM m
 ORDER BY 1, 2
"""

# The extensions' own rows (those named in the parameter), config tables by
# name, what each requires.
EXTENSION = """
SELECT e.extname, e.extversion, e.extrelocatable, e.extnamespace::regnamespace::text,
       (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(e.extconfig) c),
       e.extcondition,
       (SELECT array_agg(r.extname ORDER BY r.extname)
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension r ON r.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.objid = e.oid
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass) AS requires
  FROM pg_catalog.pg_extension e WHERE e.extname = ANY(%s) ORDER BY e.extname
"""

# The user's objects that depend on the extension, as they should survive
# an update or a dump and restore (options sorted: pg_dump writes them in
# name order).
USER_OBJECTS = """
SELECT s.srvname, (SELECT array_agg(o ORDER BY o) FROM unnest(s.srvoptions) o)::text, s.srvacl::text, pg_catalog.obj_description(s.oid, 'pg_foreign_server'),
       (SELECT array_agg(um.usename || ' ' || (SELECT array_agg(o ORDER BY o) FROM unnest(um.umoptions) o)::text
                         ORDER BY um.usename)
          FROM pg_catalog.pg_user_mappings um WHERE um.srvid = s.oid),
       (SELECT array_agg(c.oid::regclass || ' ' || (SELECT array_agg(o ORDER BY o) FROM unnest(ft.ftoptions) o)::text || ' ' || coalesce(c.relacl::text, '')
                         || ' ' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
                         ORDER BY c.relname)
          FROM pg_catalog.pg_foreign_table ft JOIN pg_catalog.pg_class c ON c.oid = ft.ftrelid
         WHERE ft.ftserver = s.oid)
  FROM pg_catalog.pg_foreign_server s ORDER BY s.srvname
"""


def snapshot(conn, sql, args=None):
    """The rows of `sql`, one line each."""
    return [" | ".join("NULL" if v is None else str(v) for v in row) for row in conn.execute(sql, args).fetchall()]


def same_lines(check, what, got, want, labels=("fresh install", "after update")):
    """Checks (with `check`) that two snapshots are equal; prints their
    difference if not."""
    if got == want:
        check(what, True, True)
        return
    diff = "\n".join(difflib.unified_diff("\n".join(want).splitlines(), "\n".join(got).splitlines(),
                                         labels[0], labels[1], lineterm=""))
    print(diff, flush=True)
    check(what, f"{len(diff.splitlines())} lines of difference (above)", "no difference")
