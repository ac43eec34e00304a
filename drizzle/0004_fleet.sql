CREATE TYPE "public"."priority" AS ENUM('LOW', 'MEDIUM', 'HIGH', 'CRITICAL');--> statement-breakpoint
CREATE TABLE "error_occurrences" (
	"pattern_id" bigint NOT NULL,
	"agent_id" text COLLATE "C",
	"message" text NOT NULL,
	"context" jsonb,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "error_patterns" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "error_patterns_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text COLLATE "C" NOT NULL,
	"type" text NOT NULL,
	"fingerprint" text NOT NULL,
	"sample_message" text NOT NULL,
	"first_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "insights" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "insights_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text COLLATE "C" NOT NULL,
	"type" text NOT NULL,
	"content" jsonb NOT NULL,
	"priority" "priority" NOT NULL,
	"source_agent_id" text COLLATE "C",
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"acted_upon_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "metrics" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "metrics_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text COLLATE "C" NOT NULL,
	"agent_id" text COLLATE "C",
	"name" text NOT NULL,
	"value" double precision NOT NULL,
	"unit" text,
	"tags" jsonb,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "optimizations" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "optimizations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text COLLATE "C" NOT NULL,
	"type" text NOT NULL,
	"description" text,
	"before" jsonb,
	"after" jsonb,
	"success" boolean NOT NULL,
	"source_agent_id" text COLLATE "C",
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "error_occurrences" ADD CONSTRAINT "error_occurrences_pattern_id_error_patterns_id_fk" FOREIGN KEY ("pattern_id") REFERENCES "public"."error_patterns"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "error_occurrences_pattern_idx" ON "error_occurrences" USING btree ("pattern_id","at");--> statement-breakpoint
CREATE UNIQUE INDEX "error_patterns_fingerprint_idx" ON "error_patterns" USING btree ("tenant_id","type","fingerprint");--> statement-breakpoint
CREATE INDEX "insights_tenant_idx" ON "insights" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE INDEX "metrics_name_idx" ON "metrics" USING btree ("tenant_id","name","at");--> statement-breakpoint
CREATE INDEX "metrics_at_idx" ON "metrics" USING btree ("tenant_id","at");--> statement-breakpoint
CREATE INDEX "optimizations_tenant_idx" ON "optimizations" USING btree ("tenant_id","at");