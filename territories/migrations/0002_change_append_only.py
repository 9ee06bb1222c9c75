from django.db import migrations

# The change log is evidence (audit, "who owned X on date D"); the database itself refuses edits.
FORWARD = """
CREATE OR REPLACE FUNCTION territories_change_append_only() RETURNS trigger AS $$
BEGIN
    -- Deleting an account, unit, territory or user clears references to it (ON DELETE SET NULL,
    -- done by Django as an UPDATE); the payload keeps their codes and names. Anything else is refused.
    IF NEW.id = OLD.id AND NEW.plan_id = OLD.plan_id AND NEW.at = OLD.at AND NEW.kind = OLD.kind
       AND NEW.batch = OLD.batch AND NEW.plan_version = OLD.plan_version AND NEW.payload = OLD.payload
       AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
       AND (NEW.account_id IS NULL OR NEW.account_id = OLD.account_id)
       AND (NEW.unit_id IS NULL OR NEW.unit_id = OLD.unit_id)
       AND (NEW.territory_from_id IS NULL OR NEW.territory_from_id = OLD.territory_from_id)
       AND (NEW.territory_to_id IS NULL OR NEW.territory_to_id = OLD.territory_to_id)
       AND (NEW.reverts_id IS NULL OR NEW.reverts_id = OLD.reverts_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'territories_change is append-only: only references to deleted rows may be cleared';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER territories_change_no_update
    BEFORE UPDATE ON territories_change
    FOR EACH ROW EXECUTE FUNCTION territories_change_append_only();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS territories_change_no_update ON territories_change;
DROP FUNCTION IF EXISTS territories_change_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("territories", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
