// The syntax tree of a parsed template: expressions and statements, each with its source line
// so that run-time errors can name it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/tokenizer/jinja/value.h"

namespace iquest::jinja {

enum class ExprKind {
  kLiteral,     // literal
  kName,        // name
  kList,        // children: items
  kTuple,       // children: items
  kDict,        // children: key, value, key, value, ...
  kGetAttr,     // children[0].name
  kGetItem,     // children[0][children[1]]
  kSlice,       // children[0][children[1]:children[2]:children[3]], each bound may be null
  kCall,        // children[0](children[1..], kwargs)
  kFilter,      // children[0] | name(children[1..], kwargs)
  kTest,        // children[0] is [not] name(children[1..])
  kNot,         // not children[0]
  kNegate,      // -children[0]
  kPlus,        // +children[0]
  kBinary,      // children[0] name children[1]: + - * / // % ** ~ and or in notin
  kCompare,     // children[0] ops[0] children[1] ops[1] children[2] ... (chained)
  kCondition,   // children[1] if children[0] else children[2] (null: undefined)
  kBlockValue,  // The rendered body of `{% set x | filter %}` / `{% filter %}`.
};

struct Expr {
  ExprKind kind;
  int line = 0;
  std::string name;
  Value literal;
  std::vector<std::unique_ptr<Expr>> children;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  std::vector<std::string> ops;  // kCompare.
  bool negated = false;          // kTest: `is not`.
};

using ExprPtr = std::unique_ptr<Expr>;

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ exprs[0] }}
  kIf,           // exprs: conditions; bodies: one per condition, then the else body
  kFor,          // for targets in exprs[0] [if exprs[1]]; bodies: [body, else]
  kSet,          // set targets = exprs[0], or set name.attr = exprs[0]
  kSetBlock,     // set name [| filters in exprs[0]] %} bodies[0] {% endset
  kMacro,        // macro name(targets = exprs defaults, null when none) bodies[0]
  kCallBlock,    // call(targets) exprs[0] %} bodies[0] {% endcall
  kFilterBlock,  // filter exprs[0] %} bodies[0] {% endfilter
  kBreak,
  kContinue,
  kScope,  // bodies[0] rendered in place: {% generation %}, which only marks output.
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string name;  // kText: the text; kSet/kSetBlock: the variable; kMacro: the macro.
  std::string attr;  // kSet: `set name.attr = ...`.
  std::vector<std::string> targets;
  std::vector<ExprPtr> exprs;
  std::vector<Body> bodies;
};

}  // namespace iquest::jinja
